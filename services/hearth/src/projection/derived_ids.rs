//! Sample ids derived from sync identifiers, so that an imported sample
//! needs no sync record in memory.
//!
//! An Apple Health import gives every sample a sync identifier `ah1-` and
//! 32 hex digits (a 128-bit digest of the record). The writer gives such a
//! sample, when it is new, the id this module derives from the identifier,
//! its source and its type (named, not numbered, so a later catalogue
//! keeps them): a keyed permutation of the digest, shaped as a random
//! (version 4) UUID. Shaping overwrites 6 bits; the row keeps them (with a
//! mark) in its device cell, so the identifier can be read back from the
//! id: a derived sample holds its identifier without a record of 40 bytes
//! and two hash-table slots.
//!
//! Nothing trusts an id to be derived: whoever applies a sync record
//! derives the id again and marks the row only if they agree, and holds a
//! record otherwise. A lost or changed key (a new root key) costs only the
//! memory the records take.

use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes256;
use sha2::{Digest, Sha256};

use crate::catalogue::TypeIndex;
use crate::crypto::SecretKey;

/// What the key is derived from the root key with.
pub const KEY_LABEL: &[u8] = b"hearth/sample-ids/v1";

/// The prefix of the identifiers whose holders' ids are derived.
pub const PREFIX: &str = "ah1-";
/// The length of such an identifier: the prefix and 32 hex digits.
pub const SPELLED_LEN: usize = PREFIX.len() + 32;

/// The bits of a UUID that say it is version 4 and of the RFC variant:
/// the version nibble (byte 6's high half) and the variant's two bits
/// (byte 8's top two), counted from the most significant byte.
const VERSION_BITS: u128 = 0xf << 76;
const VARIANT_BITS: u128 = 0b11 << 62;
const VERSION_4: u128 = 0x4 << 76;
const VARIANT_RFC: u128 = 0b10 << 62;

/// Each lowercase hex digit's value; 0xff for any other byte.
const HEX: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// The bits a derived id's version and variant overwrote
/// ([`DerivedId::kept`]) are six: no value is above this.
pub const KEPT_MASK: u8 = 0x3f;

/// A derived id and the 6 bits the UUID shape overwrote, which the row
/// keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DerivedId {
    pub id: u128,
    pub kept: u8,
}

/// The keys of both permutations: one makes each (source, type) pair's
/// tweak, the other maps a tweaked digest to an id.
pub struct IdDeriver {
    tweaks: Aes256,
    ids: Aes256,
}

impl IdDeriver {
    /// From a key of this purpose (derived from the store's root key).
    pub fn new(key: &SecretKey) -> IdDeriver {
        let half = |label: &[u8]| {
            let hkdf = hkdf::Hkdf::<Sha256>::new(None, key.as_ref());
            let mut out = zeroize::Zeroizing::new([0u8; 32]);
            hkdf.expand(label, out.as_mut())
                .expect("32 bytes is a valid HKDF-SHA256 output length");
            Aes256::new(&(*out).into())
        };
        IdDeriver {
            tweaks: half(b"tweaks"),
            ids: half(b"ids"),
        }
    }

    /// The digest an identifier spells, if its holder's id can be derived.
    pub fn digest_of(sync_id: &str) -> Option<[u8; 16]> {
        let digits: &[u8; 32] = sync_id.strip_prefix(PREFIX)?.as_bytes().try_into().ok()?;
        // By table: an import looks each identifier up several times.
        let mut digest = [0u8; 16];
        for (byte, pair) in digest.iter_mut().zip(digits.chunks_exact(2)) {
            let (high, low) = (HEX[usize::from(pair[0])], HEX[usize::from(pair[1])]);
            if (high | low) & 0xf0 != 0 {
                return None;
            }
            *byte = (high << 4) | low;
        }
        Some(digest)
    }

    /// The identifier holding `digest`.
    pub fn spell(digest: &[u8; 16]) -> String {
        let mut out = [0u8; SPELLED_LEN];
        IdDeriver::spell_into(digest, &mut out).to_owned()
    }

    /// The identifier holding `digest`, spelled out in `out`.
    pub fn spell_into<'a>(digest: &[u8; 16], out: &'a mut [u8; SPELLED_LEN]) -> &'a str {
        out[..PREFIX.len()].copy_from_slice(PREFIX.as_bytes());
        hex::encode_to_slice(digest, &mut out[PREFIX.len()..]).expect("32 digits for 16 bytes");
        std::str::from_utf8(out).expect("ASCII")
    }

    fn tweak(&self, source: &SourceDigest, ty: TypeIndex) -> [u8; 16] {
        let of_type = type_digest(ty);
        let block: [u8; 16] = std::array::from_fn(|i| source.0[i] ^ of_type[i]);
        let mut block = block.into();
        self.tweaks.encrypt_block(&mut block);
        block.into()
    }

    /// The id of the sample of `source` and type `ty` holding `digest`.
    pub fn derive(&self, source: &SourceDigest, ty: TypeIndex, digest: &[u8; 16]) -> DerivedId {
        let tweak = self.tweak(source, ty);
        let mut block: [u8; 16] = std::array::from_fn(|i| digest[i] ^ tweak[i]);
        let mut b = block.into();
        self.ids.encrypt_block(&mut b);
        block = b.into();
        let raw = u128::from_be_bytes(block);
        let overwritten = raw & (VERSION_BITS | VARIANT_BITS);
        DerivedId {
            id: (raw & !(VERSION_BITS | VARIANT_BITS)) | VERSION_4 | VARIANT_RFC,
            kept: (((overwritten >> 76) as u8) << 2) | ((overwritten >> 62) as u8 & 0b11),
        }
    }

    /// The digest whose derived id is `derived`, for `source` and `ty`.
    pub fn digest(&self, source: &SourceDigest, ty: TypeIndex, derived: DerivedId) -> [u8; 16] {
        let kept = u128::from(derived.kept);
        let raw = (derived.id & !(VERSION_BITS | VARIANT_BITS))
            | (((kept >> 2) & 0xf) << 76)
            | ((kept & 0b11) << 62);
        let mut b = raw.to_be_bytes().into();
        self.ids.decrypt_block(&mut b);
        let block: [u8; 16] = b.into();
        let tweak = self.tweak(source, ty);
        std::array::from_fn(|i| block[i] ^ tweak[i])
    }
}

/// A type's id, hashed: a tweak names the type by its id rather than its
/// place in the catalogue, which a later version may change.
fn type_digest(ty: TypeIndex) -> [u8; 16] {
    static DIGESTS: std::sync::OnceLock<Vec<[u8; 16]>> = std::sync::OnceLock::new();
    let digests = DIGESTS.get_or_init(|| {
        crate::catalogue::all()
            .iter()
            .map(|t| {
                let full = Sha256::new_with_prefix(b"hearth type\0")
                    .chain_update(t.id.as_bytes())
                    .finalize();
                std::array::from_fn(|i| full[i])
            })
            .collect()
    });
    digests.get(usize::from(ty.0)).copied().unwrap_or_default()
}

/// A source's name, hashed once when the source is first seen: what a
/// tweak is made from, so that a derived id does not depend on the order
/// in which sources were numbered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceDigest([u8; 16]);

impl SourceDigest {
    pub fn of(name: &str) -> SourceDigest {
        let full = Sha256::new_with_prefix(b"hearth source\0")
            .chain_update(name.as_bytes())
            .finalize();
        SourceDigest(std::array::from_fn(|i| full[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deriver(byte: u8) -> IdDeriver {
        IdDeriver::new(&zeroize::Zeroizing::new([byte; 32]))
    }

    #[test]
    fn a_derived_id_is_a_random_uuid_and_gives_its_digest_back() {
        let d = deriver(1);
        let source = SourceDigest::of("Apple Health/Watch");
        for n in 0..2_000u128 {
            let digest = (n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)).to_be_bytes();
            let derived = d.derive(&source, TypeIndex(3), &digest);
            let uuid = uuid::Uuid::from_u128(derived.id);
            assert_eq!(uuid.get_version(), Some(uuid::Version::Random));
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
            assert!(derived.kept < 64);
            assert_eq!(d.digest(&source, TypeIndex(3), derived), digest);
        }
    }

    #[test]
    fn ids_differ_by_source_type_and_key() {
        let digest = [7u8; 16];
        let (a, b) = (SourceDigest::of("a"), SourceDigest::of("b"));
        let one = deriver(1).derive(&a, TypeIndex(1), &digest);
        assert_ne!(one, deriver(1).derive(&b, TypeIndex(1), &digest));
        assert_ne!(one, deriver(1).derive(&a, TypeIndex(2), &digest));
        assert_ne!(one, deriver(2).derive(&a, TypeIndex(1), &digest));
        assert_eq!(one, deriver(1).derive(&a, TypeIndex(1), &digest));
        // The wrong source reads back another digest, never this one.
        assert_ne!(deriver(1).digest(&b, TypeIndex(1), one), digest);
    }

    #[test]
    fn only_the_imports_exact_form_is_derived() {
        for n in 0..=255u8 {
            let digest: [u8; 16] = std::array::from_fn(|i| n.wrapping_mul(i as u8 + 1));
            assert_eq!(
                IdDeriver::digest_of(&IdDeriver::spell(&digest)),
                Some(digest)
            );
        }
        let digits = "00112233445566778899aabbccddeeff";
        let digest = IdDeriver::digest_of(&format!("ah1-{digits}")).unwrap();
        assert_eq!(IdDeriver::spell(&digest), format!("ah1-{digits}"));
        for other in [
            format!("ah1-{digits}-1"),
            format!("ah1-{}", &digits[..30]),
            format!("ah1-{}", digits.to_uppercase()),
            format!("ah1-{}g", &digits[..31]),
            format!("ah1-{}/", &digits[..31]),
            format!("ah1-{}", "\u{e9}".repeat(16)),
            format!("ah2-{digits}"),
            format!("xah1-{digits}"),
            "ah1-".to_string(),
        ] {
            assert_eq!(IdDeriver::digest_of(&other), None, "{other}");
        }
    }
}
