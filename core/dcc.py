"""EU Digital COVID Certificates: issue and verify "HC1:" strings, and keep the keys that sign them.

The format is the eHealth Network's (Technical Specifications for EU Digital
COVID Certificates, volumes 1 to 3): the health certificate (``hcert``, a
JSON-schema'd dict) goes into a CBOR Web Token under claim -260, the token is
signed as a COSE_Sign1 structure with ES256, compressed with zlib, encoded
with Base45 and prefixed with ``HC1:``. The protected header names the
signing key by its ``kid``: the first 8 bytes of the SHA-256 of the document
signer certificate (DSC) in DER form.

Keys live in one folder (``KeyStore``): a country signing CA (CSCA) that is
only used to sign document signer certificates, and the current DSC whose
private key signs certificates. Private keys are written with mode 0600.
Retired signers stay in the trust list until their certificates expire, so
certificates they signed still verify.

Vaccination uses this module, and so does testing (negative test
certificates): it knows nothing about either.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import struct
import unicodedata
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import base45
import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.x509.oid import NameOID

PREFIX = "HC1:"
SCHEMA_VERSION = "1.3.0"
DISEASE_COVID19 = "840539006"  # SNOMED CT: COVID-19, the "tg" of every entry

COSE_SIGN1_TAG = 18
CWT_TAG = 61
HEADER_ALG = 1
HEADER_KID = 4
ALG_ES256 = -7
CLAIM_ISS = 1
CLAIM_EXP = 4
CLAIM_IAT = 6
CLAIM_HCERT = -260
HCERT_V1 = 1

KID_LENGTH = 8
# The eHN guidelines cap compressed payloads well below what a QR code can hold.
MAX_TEXT_LENGTH = 8192
MAX_INFLATED = 64 * 1024
UVCI_CHARSET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/:"
_UVCI_INDEX = {char: index for index, char in enumerate(UVCI_CHARSET)}
BASE45_CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
# Base45 (RFC 9285) of every value below 45 * 45: the two low digits of a byte pair's three.
_BASE45_LOW = tuple(BASE45_CHARSET[n % 45] + BASE45_CHARSET[n // 45] for n in range(45 * 45))

CSCA_KEY = "csca.key"
CSCA_CERT = "csca.crt"
DSC_KEY = "dsc.key"
DSC_CERT = "dsc.crt"
RETIRED_DIR = "retired"


class InvalidCertificate(ValueError):
    """A certificate string that does not decode or verify; ``reason`` is a short code for machines."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class KeysMissing(RuntimeError):
    """The key folder has no signing keys yet; the message says how to create them."""


# -- the certificate content ---------------------------------------------------------


def transliterate(name: str) -> str:
    """A name in the ICAO 9303 machine-readable form the DCC schema asks for (``fnt``/``gnt``).

    Diacritics go (Vietnamese đ becomes D), letters are upper-cased, spaces and
    hyphens become ``<`` and anything else is dropped; at most 80 characters.
    """
    text = unicodedata.normalize("NFKD", name.replace("đ", "d").replace("Đ", "D"))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).upper()
    text = re.sub(r"[\s\-]+", "<", text.strip())
    return re.sub(r"[^A-Z<]", "", text)[:80]


def person_name(family: str, given: str) -> dict[str, str]:
    """The ``nam`` object: names as written, and their transliterations."""
    name = {"fn": family.strip()[:80], "fnt": transliterate(family)}
    if given.strip():
        name |= {"gn": given.strip()[:80], "gnt": transliterate(given)}
    return name


def hcert(name: dict[str, str], birth_date: str, *, kind: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A health certificate with one entry: ``kind`` is ``v`` (vaccination), ``t`` (test) or ``r`` (recovery)."""
    if kind not in ("v", "t", "r"):
        raise ValueError("kind must be 'v', 't' or 'r'")
    return {"ver": SCHEMA_VERSION, "nam": name, "dob": birth_date, kind: [{"tg": DISEASE_COVID19, **entry}]}


def uvci(country: str, opaque: str) -> str:
    """A unique certificate identifier (``URN:UVCI:01:VN:...``) with its Luhn mod N check character."""
    body = f"URN:UVCI:01:{country.upper()}:{opaque.upper()}"
    return f"{body}#{uvci_check_character(body)}"


def uvci_check_character(text: str) -> str:
    """Luhn mod N over the UVCI character set, as the DCC schema FAQ specifies."""
    n = len(UVCI_CHARSET)
    factor, total = 2, 0
    for char in reversed(text):
        index = _UVCI_INDEX.get(char)
        if index is None:
            raise ValueError(f"character {char!r} is not allowed in a UVCI")
        addend = factor * index
        factor = 1 if factor == 2 else 2
        total += addend // n + addend % n
    return UVCI_CHARSET[(n - total % n) % n]


def uvci_is_well_formed(text: str) -> bool:
    body, sep, check = text.rpartition("#")
    try:
        return bool(sep) and len(check) == 1 and uvci_check_character(body) == check
    except ValueError:
        return False


# -- keys ----------------------------------------------------------------------------


def kid_of(certificate: x509.Certificate) -> bytes:
    """The key identifier: the first 8 bytes of the SHA-256 of the certificate's DER encoding."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()[:KID_LENGTH]


@dataclass(frozen=True)
class DocumentSigner:
    """The private key that signs certificates, and its document signer certificate."""

    private_key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    kid: bytes = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kid", kid_of(self.certificate))

    def sign(self, data: bytes) -> bytes:
        """ES256 over ``data``: the 64-byte ``r || s`` form COSE uses (not DER)."""
        r, s = decode_dss_signature(self.private_key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@dataclass(frozen=True)
class TrustEntry:
    """One published certificate: a document signer (``DSC``) or the country signing CA (``CSCA``)."""

    kind: str
    kid: bytes
    certificate: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class TrustList:
    """The document signers a verifier accepts, by kid, each checked against its CSCA."""

    country: str
    csca: tuple[x509.Certificate, ...]
    signers: Mapping[bytes, x509.Certificate]

    def entries(self) -> list[TrustEntry]:
        listed = [TrustEntry("CSCA", kid_of(cert), cert) for cert in self.csca]
        listed += [TrustEntry("DSC", kid, cert) for kid, cert in sorted(self.signers.items())]
        return listed

    @classmethod
    def of(cls, country: str, csca: Iterable[x509.Certificate], signers: Iterable[x509.Certificate]) -> TrustList:
        """Keep only signers issued and validly signed by one of the CSCA certificates."""
        authorities = tuple(csca)
        accepted = {kid_of(cert): cert for cert in signers if any(_issued_by(cert, ca) for ca in authorities)}
        return cls(country=country, csca=authorities, signers=accepted)


class KeyStore:
    """The key folder: CSCA and current DSC (key + certificate), and retired DSC certificates.

    Loaded keys are cached and reloaded when a file changes, so every worker
    picks up a rotated signer without a restart.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._watched = tuple(str(self.directory / name) for name in (CSCA_CERT, DSC_KEY, DSC_CERT, RETIRED_DIR))
        self._cached: _Loaded | None = None

    def exists(self) -> bool:
        return all((self.directory / name).is_file() for name in (CSCA_CERT, DSC_KEY, DSC_CERT))

    def init(
        self,
        *,
        country: str,
        organisation: str,
        now: datetime | None = None,
        csca_days: int = 4 * 365,
        dsc_days: int = 2 * 365,
    ) -> DocumentSigner:
        """Create the CSCA and a first DSC. Refuses to overwrite existing keys."""
        if any((self.directory / name).exists() for name in (CSCA_KEY, CSCA_CERT, DSC_KEY, DSC_CERT)):
            raise FileExistsError(
                f"{self.directory} already holds signing keys; they are never overwritten. "
                "Rotate the document signer instead, or choose another folder."
            )
        now = now or datetime.now(UTC)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        csca_key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(country, organisation, f"{organisation} CSCA")
        csca = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(csca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=csca_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(sign_certificates=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(csca_key.public_key()), critical=False)
            .sign(csca_key, hashes.SHA256())
        )
        _write_private(self.directory / CSCA_KEY, csca_key)
        _write_public(self.directory / CSCA_CERT, csca)
        return self._new_signer(csca_key, csca, country, organisation, now, dsc_days)

    def rotate_signer(self, *, now: datetime | None = None, dsc_days: int = 2 * 365) -> DocumentSigner:
        """A new DSC signed by the CSCA; the old certificate moves to ``retired/`` and stays trusted."""
        csca_key_path = self.directory / CSCA_KEY
        if not csca_key_path.is_file():
            raise KeysMissing(f"{csca_key_path} is missing: the CSCA private key is needed to sign a new DSC")
        csca_key = serialization.load_pem_private_key(csca_key_path.read_bytes(), password=None)
        if not isinstance(csca_key, ec.EllipticCurvePrivateKey):
            raise KeysMissing(f"{csca_key_path} is not an EC private key")
        csca = x509.load_pem_x509_certificate((self.directory / CSCA_CERT).read_bytes())
        old = x509.load_pem_x509_certificate((self.directory / DSC_CERT).read_bytes())
        retired = self.directory / RETIRED_DIR
        retired.mkdir(exist_ok=True, mode=0o700)
        _write_public(retired / f"dsc-{kid_of(old).hex()}.crt", old)
        (self.directory / DSC_KEY).unlink()
        (self.directory / DSC_CERT).unlink()
        country = csca.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value
        organisation = csca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        return self._new_signer(csca_key, csca, str(country), str(organisation), now or datetime.now(UTC), dsc_days)

    def signer(self) -> DocumentSigner:
        return self._load().signer

    def trust_list(self) -> TrustList:
        return self._load().trust

    def _load(self) -> _Loaded:
        # The freshness check runs for every certificate signed, so it only stats the files (no glob,
        # no path resolution): the retired/ folder's own time changes when a certificate joins it.
        cached = self._cached
        if cached is not None and cached.stamp == _stamp((*self._watched, *cached.retired)):
            return cached
        if not self.exists():
            raise KeysMissing(
                f"no certificate signing keys in {self.directory}: run `phongdich keys init` "
                "(or set the vaccination plugin's keys_dir)"
            )
        retired = tuple(sorted(str(path) for path in (self.directory / RETIRED_DIR).glob("*.crt")))
        # Taken before reading: a file changed while it is read is read again next time.
        stamp = _stamp((*self._watched, *retired))
        key = serialization.load_pem_private_key((self.directory / DSC_KEY).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise KeysMissing(f"{self.directory / DSC_KEY} is not an EC private key")
        certificate = x509.load_pem_x509_certificate((self.directory / DSC_CERT).read_bytes())
        csca = x509.load_pem_x509_certificate((self.directory / CSCA_CERT).read_bytes())
        if not _issued_by(certificate, csca):
            raise KeysMissing(f"{self.directory / DSC_CERT} is not signed by {self.directory / CSCA_CERT}")
        signer = DocumentSigner(key, certificate)
        country = str(csca.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value)
        old = [x509.load_pem_x509_certificate(Path(path).read_bytes()) for path in retired]
        trust = TrustList.of(country, [csca], [certificate, *old])
        self._cached = _Loaded(stamp, retired, signer, trust)
        return self._cached

    def _new_signer(
        self,
        csca_key: ec.EllipticCurvePrivateKey,
        csca: x509.Certificate,
        country: str,
        organisation: str,
        now: datetime,
        dsc_days: int,
    ) -> DocumentSigner:
        key = ec.generate_private_key(ec.SECP256R1())
        not_after = min(now + timedelta(days=dsc_days), csca.not_valid_after_utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(country, organisation, f"{organisation} DSC {now:%Y%m%d%H%M%S}"))
            .issuer_name(csca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(sign_certificates=False), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(csca_key.public_key()), critical=False)
            .sign(csca_key, hashes.SHA256())
        )
        _write_private(self.directory / DSC_KEY, key)
        _write_public(self.directory / DSC_CERT, certificate)
        self._cached = None
        return DocumentSigner(key, certificate)


@dataclass(frozen=True)
class _Loaded:
    stamp: tuple[int, ...]
    retired: tuple[str, ...]
    signer: DocumentSigner
    trust: TrustList


def _stamp(paths: Iterable[str]) -> tuple[int, ...]:
    """Each file's modification time in nanoseconds, -1 for one that is missing."""
    stamps = []
    for path in paths:
        try:
            stamps.append(os.stat(path).st_mtime_ns)
        except FileNotFoundError:
            stamps.append(-1)
    return tuple(stamps)


_stores_by_name: dict[str, KeyStore] = {}
_stores_by_path: dict[Path, KeyStore] = {}


def key_store(directory: str | os.PathLike[str]) -> KeyStore:
    """The process's one ``KeyStore`` for a folder, so its keys are loaded once and shared by every caller."""
    name = os.fspath(directory)
    if not os.path.isabs(name):
        name = os.path.join(os.getcwd(), name)
    store = _stores_by_name.get(name)
    if store is None:
        path = Path(name).resolve()
        store = _stores_by_name[name] = _stores_by_path.setdefault(path, KeyStore(path))
    return store


# -- encoding and verifying ------------------------------------------------------------


@dataclass(frozen=True)
class Decoded:
    """A certificate taken apart, signature not yet checked."""

    kid: bytes
    algorithm: int
    protected: bytes
    payload: bytes
    signature: bytes
    claims: dict[Any, Any]

    @property
    def issuer(self) -> str | None:
        value = self.claims.get(CLAIM_ISS)
        return value if isinstance(value, str) else None

    @property
    def issued_at(self) -> datetime | None:
        return _epoch(self.claims.get(CLAIM_IAT))

    @property
    def expires_at(self) -> datetime | None:
        return _epoch(self.claims.get(CLAIM_EXP))

    @property
    def hcert(self) -> dict[str, Any]:
        container = self.claims.get(CLAIM_HCERT)
        inner = container.get(HCERT_V1) if isinstance(container, dict) else None
        if not isinstance(inner, dict):
            raise InvalidCertificate("payload", "the payload holds no health certificate (claim -260/1)")
        return inner

    def sig_structure(self) -> bytes:
        """What ES256 signs: ``["Signature1", protected, external_aad, payload]`` in CBOR."""
        return _sig_structure(self.protected, self.payload)


def encode(
    certificate: dict[str, Any],
    *,
    signer: DocumentSigner,
    issuer: str,
    issued_at: datetime,
    expires_at: datetime,
) -> str:
    """Sign ``certificate`` (an hcert dict) and return its ``HC1:`` text."""
    claims = {
        CLAIM_ISS: issuer,
        CLAIM_IAT: int(issued_at.timestamp()),
        CLAIM_EXP: int(expires_at.timestamp()),
        CLAIM_HCERT: {HCERT_V1: certificate},
    }
    protected = cbor2.dumps({HEADER_ALG: ALG_ES256, HEADER_KID: signer.kid})
    payload = cbor2.dumps(claims)
    signature = signer.sign(_sig_structure(protected, payload))
    message = cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))
    return PREFIX + b45encode(zlib.compress(message, 9))


def b45encode(data: bytes) -> str:
    """Base45 (RFC 9285), as ``base45.b45encode`` but about three times faster: pairs by table lookup."""
    even = len(data) & ~1
    pairs = struct.unpack(f">{even // 2}H", data[:even])
    text = "".join([_BASE45_LOW[value % 2025] + BASE45_CHARSET[value // 2025] for value in pairs])
    return text + _BASE45_LOW[data[-1]] if len(data) & 1 else text


def decode(text: str) -> Decoded:
    """Take an ``HC1:`` string apart, without checking its signature. Raises ``InvalidCertificate``."""
    text = text.strip()
    if len(text) > MAX_TEXT_LENGTH:
        raise InvalidCertificate("format", "the text is too long to be a certificate")
    if not text.startswith(PREFIX):
        raise InvalidCertificate("prefix", "not an EU Digital COVID Certificate: it must start with HC1:")
    try:
        compressed = base45.b45decode(text[len(PREFIX) :])
    except (ValueError, KeyError) as exc:
        raise InvalidCertificate("base45", "the certificate text is damaged (Base45)") from exc
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(compressed, MAX_INFLATED)
        if inflater.unconsumed_tail or not inflater.eof:
            raise zlib.error("truncated or oversized")
    except zlib.error as exc:
        raise InvalidCertificate("zlib", "the certificate is truncated or damaged (compression)") from exc
    try:
        message = cbor2.loads(raw)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError) as exc:
        raise InvalidCertificate("cose", "the certificate is damaged (CBOR)") from exc
    if isinstance(message, cbor2.CBORTag):
        if message.tag == CWT_TAG and isinstance(message.value, cbor2.CBORTag):
            message = message.value
        if isinstance(message, cbor2.CBORTag):
            if message.tag != COSE_SIGN1_TAG:
                raise InvalidCertificate("cose", "not a COSE_Sign1 message")
            message = message.value
    # cbor2 decodes a tagged array as a tuple and a tagged map as a frozendict.
    if not (isinstance(message, list | tuple) and len(message) == 4):
        raise InvalidCertificate("cose", "not a COSE_Sign1 message")
    protected, unprotected, payload, signature = message
    if not all(isinstance(part, bytes) for part in (protected, payload, signature)):
        raise InvalidCertificate("cose", "the COSE_Sign1 parts have the wrong types")
    try:
        header = cbor2.loads(protected) if protected else {}
        claims = cbor2.loads(payload)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError) as exc:
        raise InvalidCertificate("cose", "the certificate header or payload is damaged") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise InvalidCertificate("cose", "the certificate header or payload is not a map")
    unprotected = unprotected if isinstance(unprotected, Mapping) else {}
    # The spec prefers the kid in the protected header but allows the unprotected one.
    kid = header.get(HEADER_KID, unprotected.get(HEADER_KID))
    algorithm = header.get(HEADER_ALG, unprotected.get(HEADER_ALG))
    if not isinstance(kid, bytes):
        raise InvalidCertificate("kid", "the certificate names no signing key (kid)")
    if not isinstance(algorithm, int):
        raise InvalidCertificate("algorithm", "the certificate names no signature algorithm")
    return Decoded(
        kid=kid, algorithm=algorithm, protected=protected, payload=payload, signature=signature, claims=claims
    )


def verify(text: str, trust: TrustList, *, now: datetime | None = None) -> Decoded:
    """Decode and check signature, signer and validity dates. Raises ``InvalidCertificate``."""
    decoded = decode(text)
    now = now or datetime.now(UTC)
    if decoded.algorithm != ALG_ES256:
        raise InvalidCertificate("algorithm", f"unsupported signature algorithm {decoded.algorithm}")
    signer = trust.signers.get(decoded.kid)
    if signer is None:
        raise InvalidCertificate("kid_unknown", "signed by a key that is not in the trust list")
    public_key = signer.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or len(decoded.signature) != 64:
        raise InvalidCertificate("signature", "the signature is invalid")
    der = encode_dss_signature(
        int.from_bytes(decoded.signature[:32], "big"), int.from_bytes(decoded.signature[32:], "big")
    )
    try:
        public_key.verify(der, decoded.sig_structure(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise InvalidCertificate("signature", "the signature is invalid: the certificate was altered") from exc
    issued, expires = decoded.issued_at, decoded.expires_at
    if issued is None or expires is None:
        raise InvalidCertificate("claims", "the certificate lacks its issue or expiry time")
    if expires <= now:
        raise InvalidCertificate("expired", f"the certificate expired on {expires:%Y-%m-%d}")
    if issued > now + timedelta(minutes=5):
        raise InvalidCertificate("not_yet_valid", "the certificate is issued in the future")
    if not signer.not_valid_before_utc <= issued <= signer.not_valid_after_utc:
        raise InvalidCertificate("kid_unknown", "the signing key was not valid when the certificate was issued")
    decoded.hcert  # noqa: B018 (raises when the payload holds no health certificate)
    return decoded


def revocation_hashes(decoded: Decoded) -> dict[str, str]:
    """The three hashes of the DCC revocation scheme: the first 128 bits of SHA-256, Base64.

    ``UCI``: of the identifier; ``COUNTRYCODEUCI``: of country code + identifier;
    ``SIGNATURE``: of the signature (for ECDSA, its ``r`` half).
    """
    entry = _first_entry(decoded.hcert)
    identifier = str(entry.get("ci", ""))
    country = str(entry.get("co", ""))
    return {
        "UCI": _short_hash(identifier.encode()),
        "COUNTRYCODEUCI": _short_hash((country + identifier).encode()),
        "SIGNATURE": _short_hash(decoded.signature[:32]),
    }


def uci_hash(identifier: str) -> str:
    return _short_hash(identifier.encode())


# -- helpers ---------------------------------------------------------------------------


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload])


def _short_hash(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()[:16]).decode("ascii")


def _first_entry(certificate: dict[str, Any]) -> dict[str, Any]:
    for kind in ("v", "t", "r"):
        entries = certificate.get(kind)
        if isinstance(entries, list) and entries and isinstance(entries[0], dict):
            return entries[0]
    raise InvalidCertificate("payload", "the health certificate has no vaccination, test or recovery entry")


def _epoch(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _issued_by(certificate: x509.Certificate, authority: x509.Certificate) -> bool:
    if certificate.issuer != authority.subject:
        return False
    try:
        certificate.verify_directly_issued_by(authority)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _name(country: str, organisation: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, country.upper()),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
        ]
    )


def _key_usage(*, sign_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not sign_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=sign_certificates,
        crl_sign=sign_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    # Created with 0600 from the first byte, so the key is never readable by others.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    os.chmod(path, 0o600)


def _write_public(path: Path, certificate: x509.Certificate) -> None:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
