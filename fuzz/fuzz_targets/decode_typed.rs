//! Arbitrary bytes as a typed topic's payload: the default codec returns a value or an error,
//! never panics and never allocates beyond its limit; a value it accepts encodes back to the
//! same bytes (bincode's encoding is canonical for these types).
#![no_main]

use evlog::codec::{Bincode, Codec};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

type Value = (u8, String, Vec<i64>, Option<(bool, char)>, BTreeMap<u16, Vec<u8>>, f64);

fuzz_target!(|data: &[u8]| {
    let decoded: Result<Value, String> = Bincode.decode(data);
    if let Ok(v) = decoded {
        let mut again = Vec::new();
        Bincode.encode(&v, &mut again).expect("a decoded value encodes");
        let back: Value = Bincode.decode(&again).expect("its encoding decodes");
        assert_eq!(format!("{back:?}"), format!("{v:?}"));
    }
});
