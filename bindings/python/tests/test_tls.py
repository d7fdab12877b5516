"""TLS links from Python: the test mesh's certificates (tests/fixtures/tls at the
repository root), given as paths or as PEM bytes."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import List

import pytest

import astranet

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "tls"


def tls(who: str, **kw: object) -> astranet.Node:
    return astranet.Node(
        tls_ca=FIXTURES / "ca.pem",
        tls_cert=str(FIXTURES / f"{who}.pem"),
        tls_key=(FIXTURES / f"{who}.key").read_bytes(),
        handshake_timeout=2,
        **kw,  # type: ignore[arg-type]
    )


def test_echo_over_an_authenticated_link() -> None:
    with tls("a") as a, tls("b") as b:
        assert a.host_id == 0xA, "the host id is the certificate's"
        assert b.join(a.listen(("127.0.0.1", 0)), timeout=10) == 0xA
        with a.bind(7) as listener:
            accepted: List[astranet.Stream] = []
            t = threading.Thread(target=lambda: accepted.append(listener.accept()))
            t.start()
            with b.dial((0xA, 7), timeout=5) as c:
                t.join(5)
                with accepted[0] as s:
                    c.sendall(b"over TLS")
                    s.settimeout(5)
                    assert s.recv(100) == b"over TLS"


def test_plaintext_and_foreign_peers_are_refused_unless_allowed() -> None:
    with tls("a") as a, astranet.Node(handshake_timeout=1) as plain, tls("intruder") as intruder:
        addr = a.listen(("127.0.0.1", 0))
        with pytest.raises(OSError):
            plain.join(addr, timeout=5)
        with pytest.raises(OSError):
            intruder.join(addr, timeout=5)
        assert a.peers() == []
    with tls("a", tls_allow_plaintext=True) as a, astranet.Node() as plain:
        assert plain.join(a.listen(("127.0.0.1", 0)), timeout=5) == a.host_id


def test_tls_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        astranet.Node(tls_ca=FIXTURES / "ca.pem")
    with pytest.raises(ValueError):
        astranet.Node(tls_allow_plaintext=True)
    with pytest.raises(FileNotFoundError):
        astranet.Node(tls_ca="/nonexistent.pem", tls_cert="/nonexistent.pem", tls_key="/nonexistent.key")
    with pytest.raises(ValueError):
        astranet.Node(tls_ca=b"not pem", tls_cert=FIXTURES / "a.pem", tls_key=FIXTURES / "a.key")
    with pytest.raises(ValueError):
        # The certificate names host 0xa.
        astranet.Node(host_id=5, tls_ca=FIXTURES / "ca.pem", tls_cert=FIXTURES / "a.pem", tls_key=FIXTURES / "a.key")


def test_an_access_policy_lets_a_peer_dial_one_name_and_not_another() -> None:
    policy = [{"peers": "b", "dial": ["open"]}]
    with tls("a", access=policy) as a, tls("b") as b:
        b.join(a.listen(("127.0.0.1", 0)), timeout=10)
        with a.bind("open") as open_, a.bind("secret"):
            accepted: List[astranet.Stream] = []
            t = threading.Thread(target=lambda: accepted.append(open_.accept()))
            t.start()
            with b.dial("open", timeout=5):
                t.join(5)
                accepted[0].close()
            with pytest.raises(ConnectionRefusedError, match="access policy"):
                b.dial("secret", timeout=5)


def test_access_rules_are_checked() -> None:
    for bad, why in [
        ([{"peer": "b"}], "unknown key"),
        ([{"dial": ["x"]}], "no peers"),
        ([{"peers": "b", "dial": "x"}], "list of str"),
        (["b"], "not a dict"),
        ([{"peers": "b", "relay": "yes"}], "bool"),
    ]:
        with pytest.raises(ValueError, match=why):
            tls("a", access=bad)
    with pytest.raises(ValueError, match="needs TLS"):
        astranet.Node(access=[{"peers": "b"}])
