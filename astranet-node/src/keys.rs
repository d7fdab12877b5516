//! `astranet keys`: the certificates of a mesh (see the core's `tls` module for how
//! they are used).
//!
//! ```text
//! astranet keys ca --out keys/                       # keys/ca.pem, keys/ca.key
//! astranet keys node web-1 --ca keys/ --out keys/    # keys/web-1.pem, keys/web-1.key
//! ```
//! A node certificate names the node (its common name, for people and logs) and its
//! host id (a DNS name `<16 hex digits>.host.astranet`, random unless --host-id), and
//! may serve as both TLS server and client. Private keys are written with mode 0600.

use crate::opts::BoxError;
use astranet::HostId;
use clap::{Args, Subcommand};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(subcommand)]
    what: Keys,
}

#[derive(Subcommand, Debug)]
enum Keys {
    /// Create the mesh CA: ca.pem (give it to every node) and ca.key (keep it safe).
    Ca {
        /// The folder to write to.
        #[arg(long)]
        out: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "astranet mesh CA")]
        name: String,
        /// Years the CA is valid (1 to 100).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i32).range(1..=100))]
        years: i32,
    },
    /// Create a node's certificate and key, signed by the mesh CA: NAME.pem, NAME.key.
    Node {
        /// The node's name (the certificate's common name and the files' names).
        name: String,
        /// The folder with ca.pem and ca.key.
        #[arg(long)]
        ca: PathBuf,
        /// The folder to write to.
        #[arg(long)]
        out: PathBuf,
        /// The node's host id (16 hex digits); random by default.
        #[arg(long)]
        host_id: Option<String>,
        /// Years the certificate is valid (1 to 100).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(i32).range(1..=100))]
        years: i32,
    },
}

pub fn run(args: KeysArgs) -> Result<ExitCode, BoxError> {
    match args.what {
        Keys::Ca { out, name, years } => {
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.distinguished_name.push(DnType::CommonName, name);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            validity(&mut params, years);
            let key = KeyPair::generate()?;
            let cert = params.self_signed(&key)?;
            std::fs::create_dir_all(&out)?;
            write(&out.join("ca.pem"), cert.pem().as_bytes(), 0o644)?;
            write(&out.join("ca.key"), key.serialize_pem().as_bytes(), 0o600)?;
            println!("wrote {} and {}", out.join("ca.pem").display(), out.join("ca.key").display());
        }
        Keys::Node { name, ca, out, host_id, years } => {
            // The files are NAME.pem and NAME.key in --out, not elsewhere.
            if name.is_empty()
                || name.starts_with('.')
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                return Err(
                    format!("{name:?}: a node's name is letters, digits, '.', '_' and '-' (not first '.')").into()
                );
            }
            let host = match host_id {
                Some(h) => h.parse::<HostId>()?,
                None => astranet::HostId::random(),
            };
            let ca_key = KeyPair::from_pem(&read(&ca.join("ca.key"))?)?;
            let ca_cert = CertificateParams::from_ca_cert_pem(&read(&ca.join("ca.pem"))?)?.self_signed(&ca_key)?;
            let mut params = CertificateParams::new(vec![astranet::tls::host_name(host)])?;
            params.distinguished_name.push(DnType::CommonName, name.clone());
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
            validity(&mut params, years);
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
            std::fs::create_dir_all(&out)?;
            let (pem, key_file) = (out.join(format!("{name}.pem")), out.join(format!("{name}.key")));
            write(&pem, cert.pem().as_bytes(), 0o644)?;
            write(&key_file, key.serialize_pem().as_bytes(), 0o600)?;
            println!("wrote {} and {} (host {host})", pem.display(), key_file.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// From an hour ago (clocks differ a little between machines) for `years` years of
/// 365 days.
fn validity(params: &mut CertificateParams, years: i32) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365 * i64::from(years));
}

fn read(path: &Path) -> Result<String, BoxError> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()).into())
}

/// Writes a new file (never over an existing one) with this mode.
fn write(path: &Path, data: &[u8], mode: u32) -> Result<(), BoxError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(data)?;
    Ok(())
}
