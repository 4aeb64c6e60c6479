"""The server side of Cognito's SRP-6a exchange (USER_SRP_AUTH).

The group is RFC 5054's 3072-bit prime with g = 2; hashes are SHA-256 over
hex strings padded as Cognito's clients pad them; the session key comes from
HKDF with the info string Cognito uses. The verifier ``v = g^x`` is computed
when a password is set, so the password itself is never needed at sign-in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

N_HEX = (
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF"
)
N = int(N_HEX, 16)
G = 2
_INFO = b"Caldera Derived Key"


def _pad(value: int | str) -> str:
    """Hex with an even number of digits and a leading 00 if the top bit is set."""
    text = value if isinstance(value, str) else format(value, "x")
    if len(text) % 2:
        return "0" + text
    if text[0] in "89abcdefABCDEF":
        return "00" + text
    return text


def _hex_hash(hex_text: str) -> str:
    return hashlib.sha256(bytes.fromhex(hex_text)).hexdigest().rjust(64, "0")


K = int(_hex_hash("00" + N_HEX + "0" + format(G, "x")), 16)


def verifier(pool_name: str, username: str, password: str) -> tuple[str, str]:
    """(salt hex, verifier hex) for a new password."""
    salt = _pad(secrets.randbits(128))
    inner = hashlib.sha256(f"{pool_name}{username}:{password}".encode()).hexdigest()
    x = int(_hex_hash(salt + inner), 16)
    return salt, format(pow(G, x, N), "x")


def server_challenge(verifier_hex: str) -> tuple[int, int]:
    """(b, B): the server's secret and public values."""
    v = int(verifier_hex, 16)
    while True:
        b = secrets.randbits(1024) % N
        big_b = (K * v + pow(G, b, N)) % N
        if big_b % N:
            return b, big_b


def session_key(big_a_hex: str, b: int, big_b: int, verifier_hex: str) -> bytes | None:
    """The 16-byte key both sides derive, or None if A is invalid."""
    big_a = int(big_a_hex, 16)
    if big_a % N == 0:
        return None
    u = int(_hex_hash(_pad(big_a) + _pad(big_b)), 16)
    if u == 0:
        return None
    s = pow(big_a * pow(int(verifier_hex, 16), u, N), b, N)
    prk = hmac.new(bytes.fromhex(_pad(format(u, "x"))), bytes.fromhex(_pad(s)), hashlib.sha256).digest()
    return hmac.new(prk, _INFO + b"\x01", hashlib.sha256).digest()[:16]


def claim_signature(key: bytes, pool_name: str, user_id: str, secret_block_b64: str, timestamp: str) -> str:
    """The PASSWORD_CLAIM_SIGNATURE the client must send."""
    message = pool_name.encode() + user_id.encode() + base64.b64decode(secret_block_b64) + timestamp.encode()
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()
