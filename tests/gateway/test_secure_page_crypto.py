"""The secure page's sealed format: a frozen known-answer vector, and every way it refuses.

Threat: a format that drifts silently (old pages stop opening), a blob moved to
another row or generation, parameters edited in the database to cost nothing
or everything, or an error that tells an attacker which check failed.
"""

from __future__ import annotations

import pickle

import pytest

from gateway.securepage import crypto
from gateway.securepage.crypto import KdfParams, MessageKey, SealError
from gateway.settings import Settings

PASSWORD = "correct horse battery"
PUBLIC_ID = "00112233445566778899aabbccddeeff"
PARAMS = KdfParams(time_cost=1, memory_cost=64, parallelism=1, salt=bytes(range(16)))
KEY = bytes(range(32, 64))
# Made once with the code of this commit (nonces 100..111 and 200..211); frozen here.
KEK = "9906131767f3c8359df25b52fb2634820f2a11decbd0c67b1d15812962e18de3"
WRAPPED = bytes.fromhex(
    "016465666768696a6b6c6d6e6f40fd7d8dc91ad83d4e479162cc84e7b7021bf5e2c26e88d987555871"
    "6d54ade02ec52c0c1a7a705e09355094602b134d"
)
BODY = bytes.fromhex(
    "01c8c9cacbcccdcecfd0d1d2d3f63ccc88d635d6f87ed4c2b9ef7208defaaa5c09bfd2199f2e824088"
    "c479c6cd151c563fb71b9dc0844340d90eb3"
)
PLAINTEXT = b"Subject: KAT\r\n\r\nknown answer\r\n"


def unwrap(password: str = PASSWORD, params: KdfParams = PARAMS, **kw: object) -> MessageKey:
    args: dict[str, object] = {"public_id": PUBLIC_ID, "generation": 1, "max_concurrent": 1}
    args.update(kw)
    wrapped = args.pop("wrapped", WRAPPED)
    assert isinstance(wrapped, bytes)
    return crypto.unwrap_key(password, params, wrapped, **args)  # type: ignore[arg-type]


def test_known_answer() -> None:
    assert crypto.derive_kek(PASSWORD, PARAMS, max_concurrent=1).hex() == KEK
    key = unwrap()
    assert key.material == KEY
    assert crypto.open_body(key, BODY, public_id=PUBLIC_ID, generation=1) == PLAINTEXT


@pytest.mark.parametrize(
    "change",
    [
        {"password": "correct horse batterY"},
        {"public_id": "ffeeddccbbaa99887766554433221100"},
        {"generation": 2},
        {"params": KdfParams(2, 64, 1, PARAMS.salt)},
        {"params": KdfParams(1, 72, 1, PARAMS.salt)},
        {"params": KdfParams(1, 64, 1, bytes(16))},
        {"wrapped": WRAPPED[:-1]},
        {"wrapped": b"\x02" + WRAPPED[1:]},
        {"wrapped": WRAPPED[:20] + bytes([WRAPPED[20] ^ 1]) + WRAPPED[21:]},
        {"wrapped": b""},
    ],
)
def test_every_change_fails_with_the_one_opaque_error(change: dict[str, object]) -> None:
    with pytest.raises(SealError) as err:
        unwrap(**change)  # type: ignore[arg-type]
    assert str(err.value) == "the sealed message cannot be opened"


@pytest.mark.parametrize(
    "params",
    [
        KdfParams(0, 64, 1, bytes(16)),
        KdfParams(17, 64, 1, bytes(16)),
        KdfParams(1, 4 * 1024 * 1024 + 1, 1, bytes(16)),
        KdfParams(1, 7, 1, bytes(16)),
        KdfParams(1, 64, 65, bytes(16)),
        KdfParams(1, 64, 1, bytes(15)),
    ],
)
def test_parameters_out_of_bounds_are_refused_before_any_work(params: KdfParams) -> None:
    with pytest.raises(SealError):
        crypto.derive_kek(PASSWORD, params, max_concurrent=1)


def test_body_is_bound_to_its_row_and_generation() -> None:
    key = MessageKey(KEY)
    for public_id, generation in ((PUBLIC_ID, 2), ("ffeeddccbbaa99887766554433221100", 1)):
        with pytest.raises(SealError):
            crypto.open_body(key, BODY, public_id=public_id, generation=generation)
    with pytest.raises(SealError):
        crypto.open_body(MessageKey(bytes(32)), BODY, public_id=PUBLIC_ID, generation=1)


def test_seal_round_trip_uses_fresh_keys_salts_and_nonces(settings: Settings) -> None:
    page = settings.securepage
    first = crypto.seal(PLAINTEXT, PASSWORD, page, public_id=PUBLIC_ID)
    second = crypto.seal(PLAINTEXT, PASSWORD, page, public_id=PUBLIC_ID)
    assert first.params.salt != second.params.salt
    assert first.wrapped_key != second.wrapped_key and first.ciphertext != second.ciphertext
    key = crypto.unwrap_key(
        PASSWORD,
        first.params,
        first.wrapped_key,
        public_id=PUBLIC_ID,
        generation=1,
        max_concurrent=1,
    )
    assert crypto.open_body(key, first.ciphertext, public_id=PUBLIC_ID, generation=1) == PLAINTEXT
    assert PLAINTEXT not in first.ciphertext
    assert (first.params.time_cost, first.params.memory_cost) == (
        page.kdf_time_cost,
        page.kdf_memory_cost,
    )


def test_keys_print_nothing_and_refuse_pickling() -> None:
    key = MessageKey(KEY)
    assert KEY.hex() not in repr(key) and str(KEY) not in repr(key)
    with pytest.raises(TypeError):
        pickle.dumps(key)
    sealed = crypto.Sealed(PARAMS, WRAPPED, BODY)
    assert WRAPPED.hex() not in repr(sealed) and "wrapped_key" not in repr(sealed)


def test_production_defaults_are_rfc_9106_second_option() -> None:
    from gateway.settings import SecurePageSettings

    defaults = SecurePageSettings()
    assert (defaults.kdf_time_cost, defaults.kdf_memory_cost, defaults.kdf_parallelism) == (
        3,
        64 * 1024,
        4,
    )


# -- the sender's sealed Sent copy --------------------------------------------------------

BINDING = "Q1\0alice@example.test"


def kek(password: str = PASSWORD, params: KdfParams = PARAMS) -> crypto.PasswordKey:
    return crypto.PasswordKey(params, crypto.derive_kek(password, params, max_concurrent=1))


def open_copy(blob: bytes, password: str = PASSWORD, binding: str = BINDING) -> bytes:
    derived = kek(password, crypto.copy_params(blob))
    key = crypto.unwrap_copy(derived, blob, binding=binding)
    return crypto.open_copy(key, blob, binding=binding)


def test_sent_copy_round_trip_shares_the_pages_derivation() -> None:
    shared = kek()
    page = crypto.seal_with(PLAINTEXT, shared, public_id=PUBLIC_ID)
    blob = crypto.seal_copy(PLAINTEXT, shared, binding=BINDING)
    assert crypto.copy_params(blob) == page.params == PARAMS  # one Argon2 run for both
    assert PLAINTEXT not in blob and KEY not in blob
    assert open_copy(blob) == PLAINTEXT
    assert crypto.unwrap_with(shared, page.wrapped_key, public_id=PUBLIC_ID, generation=1)


def test_sent_copy_refuses_other_passwords_bindings_and_edits() -> None:
    blob = crypto.seal_copy(PLAINTEXT, kek(), binding=BINDING)
    flipped = bytearray(blob)
    flipped[-1] ^= 1
    cases: list[tuple[bytes, str, str]] = [
        (blob, "correct horse batterY", BINDING),
        (blob, PASSWORD, "Q2\0alice@example.test"),  # moved to another message
        (bytes(flipped), PASSWORD, BINDING),
        (blob[:-1], PASSWORD, BINDING),
        (b"\x02" + blob[1:], PASSWORD, BINDING),
        (blob[:40], PASSWORD, BINDING),
    ]
    for candidate, password, binding in cases:
        with pytest.raises(SealError):
            open_copy(candidate, password, binding)
    # Cheaper parameters written into the blob do not open it either.
    cheaper = blob[:1] + KdfParams(1, 32, 1, PARAMS.salt).encode() + blob[1 + 28 :]
    with pytest.raises(SealError):
        open_copy(cheaper)
    # A KEK derived under other parameters is refused before any decryption.
    with pytest.raises(SealError):
        crypto.unwrap_copy(kek(params=KdfParams(1, 72, 1, PARAMS.salt)), blob, binding=BINDING)


def test_sent_copy_rewrap_moves_it_to_the_new_password_without_reencrypting() -> None:
    blob = crypto.seal_copy(PLAINTEXT, kek(), binding=BINDING)
    key = crypto.unwrap_copy(kek(), blob, binding=BINDING)
    new_params = KdfParams(1, 64, 1, bytes(range(16, 32)))
    moved = crypto.rewrap_copy(blob, key, kek("new password", new_params), binding=BINDING)
    assert open_copy(moved, "new password") == PLAINTEXT
    with pytest.raises(SealError):
        open_copy(moved, PASSWORD)
    assert moved.endswith(blob[-len(PLAINTEXT) - 16 :])  # same body blob: no nonce reused
    with pytest.raises(SealError):  # a key that is not this copy's is refused
        crypto.rewrap_copy(blob, MessageKey(bytes(32)), kek(), binding=BINDING)
