//! Laws of packed bit streams, checked on random widths, lengths and codes.

use anybit_ir::packing::{PackedBits, pack, packed_len, unpack};
use proptest::prelude::*;

/// Reference packer: one bit at a time.
fn pack_bitwise(bits: u32, codes: &[u32]) -> Vec<u8> {
    let mut bytes = vec![0u8; (codes.len() * bits as usize).div_ceil(8)];
    for (i, &code) in codes.iter().enumerate() {
        for b in 0..bits as usize {
            if code >> b & 1 == 1 {
                let at = i * bits as usize + b;
                bytes[at / 8] |= 1 << (at % 8);
            }
        }
    }
    bytes
}

fn width_and_codes() -> impl Strategy<Value = (u32, Vec<u32>)> {
    (1u32..=32).prop_flat_map(|bits| {
        let max = if bits == 32 { u32::MAX } else { (1u32 << bits) - 1 };
        (Just(bits), prop::collection::vec(0..=max, 0..200))
    })
}

proptest! {
    #[test]
    fn unpack_inverts_pack((bits, codes) in width_and_codes()) {
        let bytes = pack(bits, &codes).unwrap();
        prop_assert_eq!(bytes.len(), packed_len(bits, codes.len()).unwrap());
        prop_assert_eq!(unpack(bits, &bytes, codes.len()).unwrap(), codes);
    }

    #[test]
    fn pack_matches_the_bitwise_reference((bits, codes) in width_and_codes()) {
        prop_assert_eq!(pack(bits, &codes).unwrap(), pack_bitwise(bits, &codes));
    }

    #[test]
    fn pack_inverts_unpack(bits in 1u32..=32, bytes in prop::collection::vec(any::<u8>(), 0..100)) {
        // Every whole element in the buffer; the trailing bits come back as zero.
        let len = bytes.len() * 8 / bits as usize;
        let codes = unpack(bits, &bytes, len).unwrap();
        let repacked = pack(bits, &codes).unwrap();
        let used = len * bits as usize;
        for bit in 0..bytes.len() * 8 {
            let original = bytes[bit / 8] >> (bit % 8) & 1;
            let again = repacked.get(bit / 8).map_or(0, |b| b >> (bit % 8) & 1);
            prop_assert_eq!(again, if bit < used { original } else { 0 });
        }
    }

    #[test]
    fn set_changes_one_element((bits, codes) in width_and_codes(), index in any::<prop::sample::Index>(), code in any::<u32>()) {
        prop_assume!(!codes.is_empty());
        let mut packed = PackedBits::from_codes(bits, &codes).unwrap();
        let i = index.index(codes.len());
        let code = if bits == 32 { code } else { code & ((1 << bits) - 1) };
        packed.set(i, code).unwrap();
        let mut expected = codes.clone();
        expected[i] = code;
        prop_assert_eq!(packed.to_codes(), expected);
    }
}
