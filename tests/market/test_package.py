"""The signed package layer (market/): keys, pack → verify → unpack with the real
``as-headers`` example filter, and every way a package is refused: tampering,
untrusted or missing signatures, unsafe archive members, size bounds, an interrupted
unpack. Hostile archives are written here with :mod:`tarfile` directly, byte for byte
what an attacker could hand over; the CLI is run as a user runs it, in a subprocess.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from market.archive import Limits
from market.errors import (
    BadSignature,
    DigestMismatch,
    KeyFileError,
    ManifestError,
    MarketError,
    PackageError,
    SignatureError,
    TrustStoreError,
    UnknownSigner,
    UnpackError,
    UnsafeArchive,
    UnsignedPackage,
)
from market.manifest import canonical_json, validate_manifest
from market.package import pack, read_package, unpack
from market.signing import (
    Signature,
    TrustStore,
    add_trusted_key,
    key_id,
    keygen,
    load_private_key,
    sign,
    verify,
)
from plugin_sdk import Response
from plugin_sdk.testing import make_request, make_wasm_filter, run_filter
from tests.market.kit import members_of, tar_bytes

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "plugins" / "wasm"
AS_HEADERS = EXAMPLES / "as-headers"
MiB = 1024 * 1024

Members = list[tuple[str, bytes]]


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def as_headers() -> Path:
    """plugins/wasm/as-headers with its build/filter.wasm (built if missing or stale)."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "build.py"), "as-headers"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        pytest.fail(f"plugins/wasm/build.py failed:\n{result.stdout}", pytrace=False)
    return AS_HEADERS


@dataclass
class Publisher:
    private_path: Path
    public_path: Path
    key: Ed25519PrivateKey
    trust: TrustStore

    @property
    def key_id(self) -> str:
        return key_id(self.key.public_key())


@pytest.fixture
def publisher(tmp_path: Path) -> Publisher:
    private_path, public_path = keygen(tmp_path / "keys")
    return Publisher(
        private_path,
        public_path,
        load_private_key(private_path),
        TrustStore.from_dir(tmp_path / "keys"),
    )


@pytest.fixture
def package_file(tmp_path: Path, as_headers: Path, publisher: Publisher) -> Path:
    return pack(as_headers, publisher.key, tmp_path / "as-headers.wgpkg")


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------- keys


def test_keygen_writes_a_pem_pair_with_a_private_file_only_its_owner_reads(tmp_path: Path) -> None:
    private_path, public_path = keygen(tmp_path / "k")
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    assert private_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    key = load_private_key(private_path)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key_id(key.public_key()) == hashlib.sha256(raw).hexdigest()[:16]
    assert list(TrustStore.from_dir(tmp_path / "k")) == [key_id(key.public_key())]


def test_keygen_refuses_to_overwrite_a_key(tmp_path: Path) -> None:
    private_path, _ = keygen(tmp_path)
    before = private_path.read_bytes()
    with pytest.raises(KeyFileError, match=r"publisher\.key already exists; refusing"):
        keygen(tmp_path)
    assert private_path.read_bytes() == before


def test_a_trust_store_file_that_is_not_a_key_is_named(tmp_path: Path) -> None:
    write(tmp_path / "bob.pub", b"not a key")
    with pytest.raises(TrustStoreError, match=r"bob\.pub: not a PEM public key"):
        TrustStore.from_dir(tmp_path)


def test_trusting_a_key_copies_it_once_under_its_id(tmp_path: Path, publisher: Publisher) -> None:
    store = tmp_path / "trust"
    assert add_trusted_key(store, publisher.public_path) == publisher.key_id
    assert add_trusted_key(store, publisher.public_path) == publisher.key_id
    assert [p.name for p in store.iterdir()] == [f"{publisher.key_id}.pub"]
    assert publisher.key_id in TrustStore.from_dir(store)


def test_sign_verify_and_the_two_ways_it_fails(publisher: Publisher) -> None:
    data = b'{"name":"x"}'
    sig = sign(data, publisher.key)
    assert verify(data, sig.to_bytes(), publisher.trust) == publisher.key_id
    with pytest.raises(BadSignature, match=r"does not match manifest\.json"):
        verify(data + b" ", sig, publisher.trust)
    with pytest.raises(UnknownSigner, match=rf"key {publisher.key_id}.*trusted: none"):
        verify(data, sig, TrustStore())


# ---------------------------------------------------------------------- manifest

VALID: dict[str, Any] = {
    "name": "add-header",
    "version": "1.2.0",
    "kind": "wasm",
    "description": "Adds a header.",
    "abi": "0.2.0",
    "config_schema": {"type": "object", "properties": {"h": {"type": "string"}}},
    "payload": "filter.wasm",
    "payload_sha256": "a" * 64,
}


def test_a_valid_manifest_keeps_every_field_and_has_one_byte_form() -> None:
    obj = {**VALID, "keywords": ["headers"], "min_wasmgate": "0.1.0", "root_id": "r"}
    manifest = validate_manifest(obj, "m.json")
    assert manifest.to_json() == obj
    assert manifest.canonical_bytes() == canonical_json(obj)
    assert b" " not in manifest.canonical_bytes().replace(b"Adds a header.", b"")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        pytest.param({"name": "Add_Header"}, "name: String should match", id="name-not-kebab"),
        pytest.param({"version": "1.2"}, "must be MAJOR.MINOR.PATCH", id="version-two-parts"),
        pytest.param({"version": "v1.2.0x"}, "is not a version", id="version-garbage"),
        pytest.param({"version": "1.2.0-rc.1"}, "write '1.2.0rc1'", id="version-not-normal"),
        pytest.param({"version": "1.2.0+local"}, "MAJOR.MINOR.PATCH", id="version-local"),
        pytest.param({"kind": "lua"}, "kind: Input should be 'wasm' or 'python'", id="kind"),
        pytest.param({"abi": None}, "kind 'wasm' needs abi", id="wasm-without-abi"),
        pytest.param({"abi": "0.3.0"}, "abi: Input should be", id="abi-unknown"),
        pytest.param({"config_schema": None}, "needs config_schema", id="wasm-without-schema"),
        pytest.param(
            {"config_schema": {"type": 5}}, "not a valid JSON Schema at type", id="bad-schema"
        ),
        pytest.param({"payload": "filter.exe"}, "'.wasm' file", id="payload-suffix"),
        pytest.param(
            {"payload": "../filter.wasm"}, "payload: String should match", id="payload-path"
        ),
        pytest.param({"payload": "README.md"}, "may not be named", id="payload-reserved"),
        pytest.param({"payload_sha256": "abc"}, "payload_sha256: String", id="digest-short"),
        pytest.param({"min_wasmgate": "soon"}, "min_wasmgate: Value error", id="min-wasmgate"),
        pytest.param({"homepage": "ftp://x"}, "homepage: String should match", id="homepage"),
        pytest.param({"keywords": ["Has Space"]}, "keyword 'Has Space'", id="keyword"),
        pytest.param({"unknown": 1}, "unknown: Extra inputs are not permitted", id="extra-field"),
        pytest.param(
            {"kind": "python", "payload": "p-1.0-py3-none-any.whl"},
            "abi and root_id are for kind 'wasm' only",
            id="python-with-abi",
        ),
    ],
)
def test_an_invalid_manifest_names_the_field(change: dict[str, Any], problem: str) -> None:
    obj = {**VALID, **change}
    obj = {k: v for k, v in obj.items() if v is not None}
    with pytest.raises(ManifestError, match=r"m\.json: 1 problem") as info:
        validate_manifest(obj, "m.json")
    assert problem in str(info.value)


# ---------------------------------------------------------------------- round trip


def test_pack_then_read_gives_back_the_as_headers_filter(
    tmp_path: Path, as_headers: Path, publisher: Publisher, package_file: Path
) -> None:
    package = read_package(package_file, publisher.trust)
    source = json.loads((as_headers / "manifest.json").read_text())
    wasm = (as_headers / "build" / "filter.wasm").read_bytes()
    m = package.manifest
    assert (m.name, m.version, m.kind, m.abi, m.root_id) == (
        "as-headers",
        "0.1.0",
        "wasm",
        "0.2.0",
        "as-headers",
    )
    assert m.config_schema == source["config_schema"]
    assert m.payload == "filter.wasm"
    assert package.payload == wasm
    assert package.payload_sha256 == hashlib.sha256(wasm).hexdigest()
    assert package.readme == (as_headers / "README.md").read_bytes()
    assert package.signer == publisher.key_id
    assert package.archive_sha256 == hashlib.sha256(package_file.read_bytes()).hexdigest()
    assert [name for name, _ in members_of(package_file)] == [
        "manifest.json",
        "manifest.sig",
        "filter.wasm",
        "README.md",
    ]
    # Reproducible: the same folder and key give the same bytes.
    again = pack(as_headers, publisher.key, tmp_path / "again.wgpkg")
    assert again.read_bytes() == package_file.read_bytes()


def test_a_plain_uncompressed_tar_package_is_read_too(
    tmp_path: Path, package_file: Path, publisher: Publisher
) -> None:
    plain = write(tmp_path / "plain.wgpkg", tar_bytes(members_of(package_file), gz=False))
    assert read_package(plain, publisher.trust).manifest.name == "as-headers"


def test_pack_refuses_a_stale_digest_and_a_payload_outside_the_folder(
    tmp_path: Path, as_headers: Path, publisher: Publisher
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    write(src / "filter.wasm", (as_headers / "build" / "filter.wasm").read_bytes())
    manifest = json.loads((as_headers / "manifest.json").read_text())
    del manifest["module"]
    write(
        src / "manifest.json",
        json.dumps({**manifest, "payload": "filter.wasm", "payload_sha256": "0" * 64}).encode(),
    )
    with pytest.raises(ManifestError, match="payload_sha256: stale"):
        pack(src, publisher.key, tmp_path / "x.wgpkg")
    write(src / "manifest.json", json.dumps({**manifest, "payload": "../x.wasm"}).encode())
    with pytest.raises(ManifestError, match=r"'../x.wasm' must be inside"):
        pack(src, publisher.key, tmp_path / "x.wgpkg")
    assert not (tmp_path / "x.wgpkg").exists()


def test_an_unpacked_package_runs_as_a_filter(
    tmp_path: Path, package_file: Path, publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WASMGATE_CACHE_DIR", str(tmp_path / "cache"))
    package = read_package(package_file, publisher.trust)
    dest = unpack(package, tmp_path / "plugins" / "as-headers" / "0.1.0")
    assert sorted(p.name for p in dest.iterdir()) == [
        "README.md",
        "filter.wasm",
        "manifest.json",
        "manifest.sig",
    ]
    assert sorted(p.name for p in dest.parent.iterdir()) == ["0.1.0"]
    # The unpacked folder is itself a verifiable package layout ...
    assert (
        verify(
            (dest / "manifest.json").read_bytes(),
            (dest / "manifest.sig").read_bytes(),
            publisher.trust,
        )
        == publisher.key_id
    )
    # ... and the gateway's wasm runtime finds the config schema in manifest.json beside it.
    flt = make_wasm_filter(
        dest / "filter.wasm", {"deny_path_prefix": "/admin"}, root_id=package.manifest.root_id or ""
    )
    assert run_filter(flt, make_request("GET", "/admin/x")).status == 403
    ok = run_filter(flt, make_request("GET", "/x"), response=Response(200))
    assert ok.headers.get("x-wasm-filter") == "as-headers"


# ---------------------------------------------------------------------- tampering


def flip_payload(members: Members, other: Ed25519PrivateKey) -> Members:
    return [(n, bytes([d[0] ^ 1]) + d[1:] if n == "filter.wasm" else d) for n, d in members]


def flip_manifest(members: Members, other: Ed25519PrivateKey) -> Members:
    return [
        (n, d.replace(b'"0.1.0"', b'"0.1.1"') if n == "manifest.json" else d) for n, d in members
    ]


def resign_with(members: Members, other: Ed25519PrivateKey) -> Members:
    manifest = dict(members)["manifest.json"]
    sig = sign(manifest, other).to_bytes()
    return [(n, sig if n == "manifest.sig" else d) for n, d in members]


def forge_trusted_key_id(members: Members, other: Ed25519PrivateKey) -> Members:
    """Signed by another key, but naming the trusted key's id."""
    files = dict(members)
    trusted_id = Signature.from_bytes(files["manifest.sig"]).key_id
    forged = Signature(trusted_id, sign(files["manifest.json"], other).value).to_bytes()
    return [(n, forged if n == "manifest.sig" else d) for n, d in members]


def drop_signature(members: Members, other: Ed25519PrivateKey) -> Members:
    return [(n, d) for n, d in members if n != "manifest.sig"]


def garble_signature(members: Members, other: Ed25519PrivateKey) -> Members:
    return [(n, b"-----BEGIN SIG-----" if n == "manifest.sig" else d) for n, d in members]


def swap_readme_for_a_script(members: Members, other: Ed25519PrivateKey) -> Members:
    return [(n, d) for n, d in members if n != "README.md"] + [("install.sh", b"rm -rf /")]


def drop_payload(members: Members, other: Ed25519PrivateKey) -> Members:
    return [(n, d) for n, d in members if n != "filter.wasm"]


def drop_manifest(members: Members, other: Ed25519PrivateKey) -> Members:
    return [(n, d) for n, d in members if n != "manifest.json"]


@pytest.mark.parametrize(
    ("tamper", "error", "message"),
    [
        pytest.param(
            flip_payload,
            DigestMismatch,
            r"payload 'filter.wasm' has sha256 [0-9a-f]{64}, "
            r"but the signed manifest says [0-9a-f]{64}: the payload was altered",
            id="payload-byte-flipped",
        ),
        pytest.param(
            flip_manifest,
            BadSignature,
            r"does not match manifest.json: the manifest or "
            "its signature was altered",
            id="manifest-byte-flipped",
        ),
        pytest.param(
            resign_with,
            UnknownSigner,
            r"signed by key [0-9a-f]{16}, which trust store "
            r".* does not hold",
            id="signed-by-untrusted-key",
        ),
        pytest.param(
            forge_trusted_key_id,
            BadSignature,
            "does not match manifest.json",
            id="untrusted-signature-naming-a-trusted-key-id",
        ),
        pytest.param(
            drop_signature,
            UnsignedPackage,
            r"not signed \(no manifest.sig\)",
            id="signature-missing",
        ),
        pytest.param(
            garble_signature,
            SignatureError,
            "manifest.sig: not a wasmgate signature",
            id="signature-garbage",
        ),
        pytest.param(
            swap_readme_for_a_script,
            UnsafeArchive,
            "unexpected member 'install.sh'",
            id="unexpected-member",
        ),
        pytest.param(
            drop_payload, PackageError, "the payload 'filter.wasm' is missing", id="payload-missing"
        ),
        pytest.param(
            drop_manifest,
            PackageError,
            r"not a wasmgate package \(no manifest.json\)",
            id="manifest-missing",
        ),
    ],
)
def test_a_tampered_package_is_refused_with_the_reason(
    tmp_path: Path,
    package_file: Path,
    publisher: Publisher,
    tamper: Callable[[Members, Ed25519PrivateKey], Members],
    error: type[MarketError],
    message: str,
) -> None:
    # The untampered archive, rewritten the same way, is accepted: only `tamper` differs.
    members = members_of(package_file)
    control = write(tmp_path / "control.wgpkg", tar_bytes(members))
    assert read_package(control, publisher.trust).signer == publisher.key_id
    bad = write(tmp_path / "bad.wgpkg", tar_bytes(tamper(members, Ed25519PrivateKey.generate())))
    with pytest.raises(error, match=message) as info:
        read_package(bad, publisher.trust)
    assert str(info.value).startswith(f"{bad}: ")


def test_a_manifest_re_signed_but_not_canonical_is_refused(
    tmp_path: Path, package_file: Path, publisher: Publisher
) -> None:
    files = dict(members_of(package_file))
    pretty = json.dumps(json.loads(files["manifest.json"]), indent=2).encode()
    files["manifest.json"] = pretty
    files["manifest.sig"] = sign(pretty, publisher.key).to_bytes()
    bad = write(tmp_path / "bad.wgpkg", tar_bytes(list(files.items())))
    with pytest.raises(ManifestError, match=r"manifest\.json: 1 problem:\n  not canonical JSON"):
        read_package(bad, publisher.trust)


# ---------------------------------------------------------------------- unsafe archives

SMALL = Limits(max_member=1000, max_total=1500)


def oversize_header() -> bytes:
    """A member whose header claims 65 MiB, followed by a few bytes: refused unread."""
    info = tarfile.TarInfo("filter.wasm")
    info.size = 65 * MiB
    return gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 1024)


@pytest.mark.parametrize(
    ("archive", "limits", "error", "message"),
    [
        pytest.param(
            lambda: tar_bytes([("../x", b"x")]),
            Limits(),
            UnsafeArchive,
            r"member '../x' is a path with '..' that leaves the package",
            id="dotdot",
        ),
        pytest.param(
            lambda: tar_bytes([("a/../../x", b"x")]),
            Limits(),
            UnsafeArchive,
            "'..' that leaves the package",
            id="dotdot-nested",
        ),
        pytest.param(
            lambda: tar_bytes([("/etc/cron.d/x", b"x")]),
            Limits(),
            UnsafeArchive,
            r"member '/etc/cron.d/x' is an absolute path",
            id="absolute-path",
        ),
        pytest.param(
            lambda: tar_bytes([("sub/x", b"x")]),
            Limits(),
            UnsafeArchive,
            "not a plain file name",
            id="subdirectory",
        ),
        pytest.param(
            lambda: tar_bytes([special("filter.wasm", tarfile.SYMTYPE, "/etc/passwd")]),
            Limits(),
            UnsafeArchive,
            r"'filter.wasm' is a symbolic link \(to '/etc/passwd'\)",
            id="symlink",
        ),
        pytest.param(
            lambda: tar_bytes(
                [("README.md", b"x"), special("filter.wasm", tarfile.LNKTYPE, "README.md")]
            ),
            Limits(),
            UnsafeArchive,
            r"'filter.wasm' is a hard link \(to 'README.md'\)",
            id="hardlink",
        ),
        pytest.param(
            lambda: tar_bytes([special("filter.wasm", tarfile.CHRTYPE)]),
            Limits(),
            UnsafeArchive,
            "is a device file",
            id="char-device",
        ),
        pytest.param(
            lambda: tar_bytes([special("filter.wasm", tarfile.BLKTYPE)]),
            Limits(),
            UnsafeArchive,
            "is a device file",
            id="block-device",
        ),
        pytest.param(
            lambda: tar_bytes([special("filter.wasm", tarfile.FIFOTYPE)]),
            Limits(),
            UnsafeArchive,
            "is a FIFO",
            id="fifo",
        ),
        pytest.param(
            lambda: tar_bytes([special("build", tarfile.DIRTYPE)]),
            Limits(),
            UnsafeArchive,
            "'build' is a directory",
            id="directory",
        ),
        pytest.param(
            lambda: tar_bytes([("manifest.json", b"{}"), ("manifest.json", b"{}")]),
            Limits(),
            UnsafeArchive,
            "'manifest.json' appears twice",
            id="duplicate-member",
        ),
        pytest.param(
            lambda: tar_bytes([(f"f{i}", b"") for i in range(5)]),
            Limits(),
            UnsafeArchive,
            "'f4': more than 4 members",
            id="too-many-members",
        ),
        pytest.param(
            oversize_header,
            Limits(),
            UnsafeArchive,
            r"'filter.wasm' is 68157440 bytes, over the 67108864-byte bound",
            id="oversize-member-default-bound",
        ),
        pytest.param(
            lambda: tar_bytes([("filter.wasm", b"x" * 1001)]),
            SMALL,
            UnsafeArchive,
            "is 1001 bytes, over the 1000-byte bound",
            id="oversize-member",
        ),
        pytest.param(
            lambda: tar_bytes([("a", b"x" * 800), ("b", b"x" * 800)]),
            SMALL,
            UnsafeArchive,
            "'b': members total 1600 bytes, over the 1500-byte bound",
            id="oversize-total",
        ),
        pytest.param(
            lambda: gzip.compress(b"\0" * (3 * MiB)),
            SMALL,
            UnsafeArchive,
            "decompresses to more than",
            id="gzip-bomb",
        ),
        pytest.param(
            lambda: b"\x1f\x8b\x08garbage",
            Limits(),
            PackageError,
            "corrupt gzip stream",
            id="corrupt-gzip",
        ),
        pytest.param(
            lambda: b"just some bytes" * 100,
            Limits(),
            PackageError,
            "not a valid tar archive",
            id="not-a-tar",
        ),
    ],
)
def test_an_unsafe_archive_is_refused_naming_the_member(
    tmp_path: Path,
    publisher: Publisher,
    archive: Callable[[], bytes],
    limits: Limits,
    error: type[MarketError],
    message: str,
) -> None:
    path = write(tmp_path / "evil.wgpkg", archive())
    with pytest.raises(error, match=message) as info:
        read_package(path, publisher.trust, limits)
    assert str(info.value).startswith(f"{path}: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.wgpkg", "keys"]


# ---------------------------------------------------------------------- unpack


def test_unpack_writes_every_file_and_leaves_nothing_else(
    tmp_path: Path, package_file: Path, publisher: Publisher
) -> None:
    package = read_package(package_file, publisher.trust)
    dest = unpack(package, tmp_path / "out" / "as-headers")
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == dict(package.files())
    assert os.listdir(tmp_path / "out") == ["as-headers"]
    assert stat.S_IMODE((dest / "filter.wasm").stat().st_mode) == 0o644


def test_unpack_refuses_an_existing_destination(
    tmp_path: Path, package_file: Path, publisher: Publisher
) -> None:
    (tmp_path / "dest").mkdir()
    write(tmp_path / "dest" / "mine.txt", b"keep")
    with pytest.raises(UnpackError, match="dest already exists"):
        unpack(read_package(package_file, publisher.trust), tmp_path / "dest")
    assert os.listdir(tmp_path / "dest") == ["mine.txt"]


def _fail_with(exc: BaseException) -> Callable[..., None]:
    def fail(*args: object, **kwargs: object) -> None:
        raise exc

    return fail


@pytest.mark.parametrize(
    ("function", "exc", "raised"),
    [
        pytest.param(
            "replace",
            OSError(18, "Invalid cross-device link"),
            UnpackError,
            id="final-rename-fails",
        ),
        pytest.param(
            "fsync", KeyboardInterrupt(), KeyboardInterrupt, id="interrupted-while-writing"
        ),
        pytest.param(
            "chmod",
            OSError(28, "No space left on device"),
            UnpackError,
            id="io-error-before-rename",
        ),
    ],
)
def test_an_interrupted_unpack_leaves_neither_destination_nor_temp_dir(
    tmp_path: Path,
    package_file: Path,
    publisher: Publisher,
    monkeypatch: pytest.MonkeyPatch,
    function: str,
    exc: BaseException,
    raised: type[BaseException],
) -> None:
    package = read_package(package_file, publisher.trust)
    parent = tmp_path / "plugins"
    parent.mkdir()
    monkeypatch.setattr(os, function, _fail_with(exc))
    with pytest.raises(raised):
        unpack(package, parent / "as-headers")
    monkeypatch.undo()
    assert os.listdir(parent) == []
    # And a later unpack succeeds.
    assert unpack(package, parent / "as-headers").is_dir()


# ---------------------------------------------------------------------- CLI


def wasmgate(*args: str | Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", "plugin", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=home,
        env={**os.environ, "WASMGATE_HOME": str(home / "wghome")},
    )


def test_cli_keygen_pack_trust_verify(tmp_path: Path, as_headers: Path) -> None:
    made = wasmgate("keygen", home=tmp_path)
    assert made.returncode == 0, made.stderr
    private = tmp_path / "wghome" / "keys" / "publisher.key"
    public = tmp_path / "wghome" / "keys" / "publisher.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    kid = key_id(load_private_key(private).public_key())
    assert f"key id       {kid}" in made.stdout

    again = wasmgate("keygen", home=tmp_path)
    assert again.returncode == 1
    assert "publisher.key already exists" in again.stderr

    packed = wasmgate("pack", as_headers, "--key", private, home=tmp_path)
    assert packed.returncode == 0, packed.stderr
    archive = tmp_path / "as-headers-0.1.0.wgpkg"
    assert packed.stdout.strip() == "as-headers-0.1.0.wgpkg"

    untrusted = wasmgate("verify", archive, home=tmp_path)
    assert untrusted.returncode == 1
    assert f"signed by key {kid}, which trust store" in untrusted.stderr
    assert untrusted.stdout == ""

    trusted = wasmgate("trust", public, home=tmp_path)
    assert trusted.returncode == 0, trusted.stderr
    verified = wasmgate("verify", archive, "--json", home=tmp_path)
    assert verified.returncode == 0, verified.stderr
    wasm = (as_headers / "build" / "filter.wasm").read_bytes()
    assert json.loads(verified.stdout) == {
        "name": "as-headers",
        "version": "0.1.0",
        "kind": "wasm",
        "signer": kid,
        "payload": "filter.wasm",
        "payload_sha256": hashlib.sha256(wasm).hexdigest(),
        "archive_sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
    }
    text = wasmgate("verify", archive, "--trust", tmp_path / "wghome" / "keys", home=tmp_path)
    assert text.returncode == 0, text.stderr
    for word in ("as-headers", "0.1.0", "wasm", kid, hashlib.sha256(wasm).hexdigest()):
        assert word in text.stdout


def test_cli_verify_exits_1_with_the_reason_for_a_tampered_package(
    tmp_path: Path, package_file: Path, publisher: Publisher
) -> None:
    members = flip_payload(members_of(package_file), publisher.key)
    bad = write(tmp_path / "bad.wgpkg", tar_bytes(members))
    result = wasmgate("verify", bad, "--trust", publisher.public_path.parent, home=tmp_path)
    assert result.returncode == 1
    assert "the payload was altered" in result.stderr
    assert result.stdout == ""


def test_cli_help_describes_the_package_commands(tmp_path: Path) -> None:
    listing = wasmgate("--help", home=tmp_path)
    for command in ("keygen", "trust", "pack", "verify"):
        assert command in listing.stdout
    pack_help = wasmgate("pack", "--help", home=tmp_path)
    assert "--key PRIVATE" in pack_help.stdout
    assert "payload_sha256 is filled in" in pack_help.stdout
