//! Parsing and printing of sizes and counts, so flags and row names read the same way.

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;

/// Parses `2GiB`, `100KiB`, `64M`, `4096`: suffixes are binary (K = KiB).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("{text:?}: expected a number with an optional K/M/G suffix"))?;
    let unit = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => KIB,
        "m" | "mib" => MIB,
        "g" | "gib" => GIB,
        other => return Err(format!("{text:?}: unknown size suffix {other:?}")),
    };
    n.checked_mul(unit).ok_or_else(|| format!("{text:?}: too large"))
}

/// `2147483648` → `2 GiB`; sizes that are not a whole number of units keep their bytes.
pub fn fmt_size(bytes: u64) -> String {
    for (unit, name) in [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
        if bytes >= unit && bytes % unit == 0 {
            return format!("{} {name}", bytes / unit);
        }
    }
    format!("{bytes} B")
}

/// `10000` → `10k`, `1000000` → `1M`, `12345` → `12,345`.
pub fn fmt_count(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => group_thousands(n as f64, 0),
    }
}

/// `1234567.8` with 0 decimals → `1,234,568`.
pub fn group_thousands(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    let (int, frac) = text.split_at(text.find('.').unwrap_or(text.len()));
    let (sign, digits) = int.split_at(usize::from(int.starts_with('-')));
    let mut grouped = String::with_capacity(text.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}{frac}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip() {
        assert_eq!(parse_size("2GiB"), Ok(2 * GIB));
        assert_eq!(parse_size("100k"), Ok(100 * KIB));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("3 parsecs").is_err());
        assert_eq!(fmt_size(2 * GIB), "2 GiB");
        assert_eq!(fmt_size(100 * KIB), "100 KiB");
        assert_eq!(fmt_size(1000), "1000 B");
    }

    #[test]
    fn counts() {
        assert_eq!(fmt_count(10_000), "10k");
        assert_eq!(fmt_count(1_000_000), "1M");
        assert_eq!(fmt_count(12_345), "12,345");
        assert_eq!(group_thousands(1_234_567.84, 1), "1,234,567.8");
        assert_eq!(group_thousands(-999.0, 0), "-999");
    }
}
