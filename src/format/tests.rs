use super::*;

/// Rows `(at, size, field)` of the first table after the line that starts with `marker`.
fn spec_table(marker: &str) -> Vec<(usize, Option<usize>, String)> {
    let spec = include_str!("../../FORMAT.md");
    let mut lines = spec.lines().skip_while(|l| !l.starts_with(marker));
    assert!(lines.next().is_some(), "FORMAT.md has no line starting with {marker:?}");
    lines
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            (cells[1].parse().expect("at"), cells[2].parse().ok(), cells[3].to_string())
        })
        .collect()
}

fn assert_layout(marker: &str, code: &[(&str, usize, usize)], total: usize) {
    let rows = spec_table(marker);
    for &(field, at, size) in code {
        let row = rows.iter().find(|r| r.2 == field).unwrap_or_else(|| panic!("{marker}: no row {field}"));
        assert_eq!(row.0, at, "{marker}: {field} position");
        assert_eq!(row.1, Some(size), "{marker}: {field} size");
    }
    let end = rows.iter().filter_map(|r| r.1.map(|s| r.0 + s)).max().unwrap_or(0);
    assert_eq!(end.max(rows.iter().map(|r| r.0).max().unwrap_or(0)), total, "{marker}: total length");
}

#[test]
fn constants_match_format_md() {
    assert_layout(
        "## Segment header",
        &[
            ("magic", SEGMENT_MAGIC_AT, 8),
            ("version", SEGMENT_VERSION_AT, 2),
            ("flags", SEGMENT_FLAGS_AT, 2),
            ("reserved", SEGMENT_RESERVED_AT, 4),
            ("base_offset", SEGMENT_BASE_OFFSET_AT, 8),
            ("reserved_tail", SEGMENT_RESERVED_TAIL_AT, 4),
            ("crc", SEGMENT_CRC_AT, 4),
        ],
        SEGMENT_HEADER_LEN,
    );
    assert_layout(
        "## Frame",
        &[
            ("crc", FRAME_CRC_AT, 4),
            ("magic", FRAME_MAGIC_AT, 1),
            ("version", FRAME_VERSION_AT, 1),
            ("flags", FRAME_FLAGS_AT, 2),
            ("offset", FRAME_OFFSET_AT, 8),
            ("durable_offset", FRAME_DURABLE_OFFSET_AT, 8),
            ("timestamp", FRAME_TIMESTAMP_AT, 8),
            ("key_len", FRAME_KEY_LEN_AT, 4),
            ("headers_len", FRAME_HEADERS_LEN_AT, 4),
            ("payload_len", FRAME_PAYLOAD_LEN_AT, 4),
        ],
        FRAME_HEADER_LEN,
    );
    assert_layout(
        "Header (both files)",
        &[
            ("magic", INDEX_MAGIC_AT, 8),
            ("version", INDEX_VERSION_AT, 2),
            ("entry_len", INDEX_ENTRY_LEN_AT, 2),
            ("reserved", INDEX_RESERVED_AT, 4),
            ("base_offset", INDEX_BASE_OFFSET_AT, 8),
            ("covered_bytes", INDEX_COVERED_BYTES_AT, 8),
            ("record_count", INDEX_RECORD_COUNT_AT, 8),
            ("entry_count", INDEX_ENTRY_COUNT_AT, 4),
            ("crc", INDEX_CRC_AT, 4),
        ],
        INDEX_HEADER_LEN,
    );
    assert_layout(
        "Committed value",
        &[("offset", state::COMMITTED_OFFSET_AT, 8), ("at_ms", state::COMMITTED_AT_MS_AT, 8)],
        state::COMMITTED_LEN,
    );
    assert_layout("Queue cursor", &[("cursor", 0, state::QUEUE_CURSOR_LEN)], state::QUEUE_CURSOR_LEN);
    assert_layout(
        "Queue head",
        &[("floor", state::QUEUE_FLOOR_AT, 8), ("cursor", state::QUEUE_HEAD_CURSOR_AT, 8)],
        state::QUEUE_HEAD_LEN,
    );
    {
        use crate::format::topic_config::*;
        assert_layout(
            "## Topic configuration",
            &[
                ("magic", TOPIC_CONFIG_MAGIC_AT, 8),
                ("version", TOPIC_CONFIG_VERSION_AT, 2),
                ("flags", TOPIC_CONFIG_FLAGS_AT, 2),
                ("when_full", TOPIC_CONFIG_WHEN_FULL_AT, 4),
                ("bytes_max", TOPIC_CONFIG_BYTES_MAX_AT, 8),
                ("block_timeout_ms", TOPIC_CONFIG_BLOCK_TIMEOUT_MS_AT, 8),
                ("retention_age_ms", TOPIC_CONFIG_RETENTION_AGE_MS_AT, 8),
                ("tombstone_retention_ms", TOPIC_CONFIG_TOMBSTONE_RETENTION_MS_AT, 8),
                ("retention_bytes", TOPIC_CONFIG_RETENTION_BYTES_AT, 8),
                ("crc", TOPIC_CONFIG_CRC_AT, 4),
            ],
            TOPIC_CONFIG_LEN,
        );
    }
    {
        use crate::format::compressed::*;
        assert_layout(
            "Block header",
            &[
                ("magic", BLOCK_MAGIC_AT, 4),
                ("codec", BLOCK_CODEC_AT, 1),
                ("reserved", BLOCK_RESERVED_AT, 3),
                ("start", BLOCK_START_AT, 8),
                ("len", BLOCK_LEN_AT, 4),
                ("compressed_len", BLOCK_COMPRESSED_LEN_AT, 4),
                ("crc", BLOCK_CRC_AT, 4),
            ],
            BLOCK_HEADER_LEN,
        );
        assert_layout(
            "Block table entry",
            &[("start", TABLE_START_AT, 8), ("file_pos", TABLE_FILE_POS_AT, 8)],
            TABLE_ENTRY_LEN,
        );
        assert_layout(
            "Trailer",
            &[
                ("magic", TRAILER_MAGIC_AT, 8),
                ("table_pos", TRAILER_TABLE_POS_AT, 8),
                ("block_count", TRAILER_BLOCK_COUNT_AT, 4),
                ("crc", TRAILER_CRC_AT, 4),
            ],
            TRAILER_LEN,
        );
    }
    assert_layout(
        "Key index entry",
        &[
            ("hash", KEY_ENTRY_HASH_AT, 8),
            ("rel_offset", KEY_ENTRY_REL_OFFSET_AT, 4),
            ("position", KEY_ENTRY_POSITION_AT, 4),
        ],
        KEY_ENTRY_LEN,
    );
    // The hash FORMAT.md spells out, on known vectors of 64-bit FNV-1a.
    assert_eq!(key_hash(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(key_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_layout(
        "Queue entry",
        &[("deliveries", state::QUEUE_DELIVERIES_AT, 4), ("ready_at_ms", state::QUEUE_READY_AT_MS_AT, 8)],
        state::QUEUE_ENTRY_LEN,
    );
    assert_layout(
        "## Replay run files",
        &[
            ("timestamp", run::RUN_TIMESTAMP_AT, 8),
            ("topic", run::RUN_TOPIC_AT, 2),
            ("offset", run::RUN_OFFSET_AT, 8),
            ("key_len", run::RUN_KEY_LEN_AT, 4),
            ("payload_len", run::RUN_PAYLOAD_LEN_AT, 4),
            ("crc", run::RUN_CRC_AT, 4),
        ],
        run::RUN_ENTRY_HEADER_LEN,
    );
    assert_layout(
        "Offset index entry",
        &[("rel_offset", OFFSET_ENTRY_REL_OFFSET_AT, 4), ("position", OFFSET_ENTRY_POSITION_AT, 4)],
        OFFSET_ENTRY_LEN,
    );
    assert_layout(
        "Time index entry",
        &[
            ("max_ts", TIME_ENTRY_MAX_TS_AT, 8),
            ("min_ts", TIME_ENTRY_MIN_TS_AT, 8),
            ("rel_offset", TIME_ENTRY_REL_OFFSET_AT, 4),
            ("position", TIME_ENTRY_POSITION_AT, 4),
        ],
        TIME_ENTRY_LEN,
    );
    assert_layout(
        "## Checkpoint",
        &[
            ("magic", CHECKPOINT_MAGIC_AT, 8),
            ("version", CHECKPOINT_VERSION_AT, 2),
            ("flags", CHECKPOINT_FLAGS_AT, 2),
            ("reserved", CHECKPOINT_RESERVED_AT, 4),
            ("segment_base", CHECKPOINT_SEGMENT_BASE_AT, 8),
            ("position", CHECKPOINT_POSITION_AT, 8),
            ("next_offset", CHECKPOINT_NEXT_OFFSET_AT, 8),
            ("crc", CHECKPOINT_CRC_AT, 4),
        ],
        CHECKPOINT_LEN,
    );
    let spec = include_str!("../../FORMAT.md");
    for magic in [&SEGMENT_MAGIC, &OFFSET_INDEX_MAGIC, &TIME_INDEX_MAGIC, &CHECKPOINT_MAGIC] {
        let text = std::str::from_utf8(magic).unwrap_or_default();
        assert!(spec.contains(&format!("`{text}`")), "FORMAT.md names magic {text}");
    }
    assert!(spec.contains(&format!("`{FRAME_MAGIC:#04X}`").replace("0X", "0x")), "FORMAT.md names the frame magic");
}

fn frame(offset: u64, key: Option<&[u8]>, headers: &[(&str, &[u8])], payload: &[u8], cont: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let hl = headers_block_len(headers).expect("valid headers");
    let f = FrameFields {
        offset,
        durable_offset: offset / 2,
        timestamp: -42,
        key,
        headers,
        payload,
        batch_continues: cont,
    };
    let n = encode_frame(&mut out, &f, hl);
    assert_eq!(n, out.len());
    // Encoding in place (what the writer does into the mapped segment) gives the same bytes,
    // and refuses a slice one byte short.
    let mut slot = vec![0xEEu8; n + 3];
    assert_eq!(encode_frame_into(&mut slot, &f, hl), Some(n));
    assert_eq!(&slot[..n], &out[..], "in place and appended frames agree");
    assert_eq!(encode_frame_into(&mut vec![0u8; n - 1], &f, hl), None);
    out
}

#[test]
fn frame_round_trips_with_key_headers_and_payload() {
    let b = frame(7, Some(b"k"), &[("a", b"1"), ("bee", b"")], b"payload", true);
    let d = decode_frame(&b, Some(7)).expect("decodes");
    assert_eq!(d.offset, 7);
    assert_eq!(d.durable_offset, 3);
    assert_eq!(d.timestamp, -42);
    assert!(d.batch_continues());
    assert_eq!(d.len, b.len());
    assert_eq!(&b[d.key.clone().expect("key")], b"k");
    assert_eq!(&b[d.payload.clone()], b"payload");
    let headers: Vec<_> = HeadersIter::new(&b[d.headers.clone()]).map(|h| h.expect("header")).collect();
    assert_eq!(headers, vec![(&b"a"[..], &b"1"[..]), (&b"bee"[..], &b""[..])]);
}

#[test]
fn empty_key_is_distinct_from_no_key() {
    let with = frame(0, Some(b""), &[], b"x", false);
    let without = frame(0, None, &[], b"x", false);
    assert_eq!(decode_frame(&with, None).expect("ok").key, Some(FRAME_HEADER_LEN..FRAME_HEADER_LEN));
    assert_eq!(decode_frame(&without, None).expect("ok").key, None);
}

#[test]
fn frame_decode_rejects_every_kind_of_bad_input() {
    let good = frame(5, Some(b"key"), &[("h", b"v")], b"hello", false);
    // Wrong offset.
    assert_eq!(decode_frame(&good, Some(6)), Err(FrameError::WrongOffset { expected: 6, found: 5 }));
    // Every strict prefix is truncated, never a frame.
    for cut in 0..good.len() {
        assert!(
            matches!(decode_frame(&good[..cut], Some(5)), Err(FrameError::Truncated { .. })),
            "prefix of {cut} bytes"
        );
    }
    // Every single-bit flip is rejected.
    for i in 0..good.len() {
        for bit in 0..8 {
            let mut bad = good.clone();
            bad[i] ^= 1 << bit;
            assert!(decode_frame(&bad, Some(5)).is_err(), "flip of bit {bit} in byte {i} accepted");
        }
    }
    // Zeros.
    assert_eq!(decode_frame(&[0u8; 100], None), Err(FrameError::Zeroed));
    assert_eq!(decode_frame(&[0u8; 10], None), Err(FrameError::Zeroed));
    // Absurd lengths are rejected before any slicing.
    let mut huge = good.clone();
    huge[FRAME_PAYLOAD_LEN_AT..FRAME_PAYLOAD_LEN_AT + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(decode_frame(&huge, None), Err(FrameError::BadLength("record body")));
}

#[test]
fn frame_decode_rejects_unknown_version_and_flags_even_with_a_fixed_checksum() {
    let refix = |mut b: Vec<u8>| {
        let crc = crc32fast::hash(&b[FRAME_CRC_FROM..]);
        b[..4].copy_from_slice(&crc.to_le_bytes());
        b
    };
    let mut v = frame(0, None, &[], b"x", false);
    v[FRAME_VERSION_AT] = 2;
    assert_eq!(decode_frame(&refix(v), None), Err(FrameError::UnsupportedVersion(2)));
    let mut f = frame(0, None, &[], b"x", false);
    f[FRAME_FLAGS_AT] = 0x80;
    assert_eq!(decode_frame(&refix(f), None), Err(FrameError::UnknownFlags(0x80)));
    let mut d = frame(0, None, &[], b"x", false);
    d[FRAME_DURABLE_OFFSET_AT] = 9;
    assert!(matches!(decode_frame(&refix(d), None), Err(FrameError::BadLength(_))));
    let mut k = frame(0, None, &[], b"xy", false);
    k[FRAME_KEY_LEN_AT] = 1;
    assert!(matches!(decode_frame(&refix(k), None), Err(FrameError::BadLength(_))));
}

#[test]
fn malformed_headers_block_is_rejected_even_with_a_fixed_checksum() {
    let mut b = frame(0, None, &[("name", b"value")], b"", false);
    // Claim two headers where there is one.
    let at = FRAME_HEADER_LEN;
    b[at..at + 2].copy_from_slice(&2u16.to_le_bytes());
    let crc = crc32fast::hash(&b[FRAME_CRC_FROM..]);
    b[..4].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(decode_frame(&b, None), Err(FrameError::BadHeaders(_))));
}

#[test]
fn header_limits_are_enforced_when_encoding() {
    let many: Vec<(&str, &[u8])> = (0..=HEADERS_COUNT_MAX).map(|_| ("n", &b""[..])).collect();
    assert!(headers_block_len(&many).is_err());
    let long = "x".repeat(HEADER_NAME_BYTES_MAX + 1);
    assert!(headers_block_len(&[(long.as_str(), b"")]).is_err());
    assert!(headers_block_len(&[("", b"")]).is_err());
    assert_eq!(headers_block_len(&[]), Ok(0));
}

#[test]
fn find_valid_frame_skips_garbage_and_zeros() {
    let mut b = vec![0u8; 50];
    b.extend_from_slice(&[FRAME_MAGIC; 70]);
    let at = b.len();
    b.extend(frame(3, None, &[], b"abc", false));
    b.extend_from_slice(&[0u8; 10]);
    let (p, f) = find_valid_frame(&b, 0).expect("found");
    assert_eq!((p, f.offset), (at, 3));
    assert!(find_valid_frame(&b, at + 1).is_none());
    assert!(find_valid_frame(&[], 0).is_none());
}

#[test]
fn segment_header_round_trips_and_rejects_damage() {
    let h = encode_segment_header(1234);
    assert_eq!(decode_segment_header(&h), Ok(1234));
    let c = encode_segment_header_with_flags(77, SEGMENT_FLAG_COMPACTED);
    assert_eq!(decode_segment_header_with_flags(&c), Ok((77, SEGMENT_FLAG_COMPACTED)));
    assert!(decode_segment_header(&encode_segment_header_with_flags(77, 4)).is_err(), "unknown segment flag");
    assert!(matches!(decode_segment_header(&h[..10]), Err(HeaderError::Short { .. })));
    assert_eq!(decode_segment_header(&[0u8; SEGMENT_HEADER_LEN]), Err(HeaderError::BadMagic));
    let mut bad = h;
    bad[SEGMENT_BASE_OFFSET_AT] ^= 1;
    assert_eq!(decode_segment_header(&bad), Err(HeaderError::BadChecksum));
}

#[test]
fn index_round_trips_and_rejects_damage() {
    let mut entries = Vec::new();
    encode_offset_entry(&mut entries, 0, 32);
    encode_offset_entry(&mut entries, 10, 4100);
    let h = IndexHeader { base_offset: 9, covered_bytes: 5000, record_count: 20, entry_count: 2 };
    let b = encode_index(OFFSET_INDEX_MAGIC, OFFSET_ENTRY_LEN, &h, &entries);
    assert_eq!(decode_index(OFFSET_INDEX_MAGIC, OFFSET_ENTRY_LEN, &b), Ok(h));
    assert_eq!(offset_entry(&b[INDEX_HEADER_LEN..], 1), (10, 4100));
    assert_eq!(decode_index(TIME_INDEX_MAGIC, OFFSET_ENTRY_LEN, &b), Err(HeaderError::BadMagic));
    for cut in 0..b.len() {
        assert!(decode_index(OFFSET_INDEX_MAGIC, OFFSET_ENTRY_LEN, &b[..cut]).is_err(), "cut at {cut}");
    }
    let mut flipped = b.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 4;
    assert_eq!(decode_index(OFFSET_INDEX_MAGIC, OFFSET_ENTRY_LEN, &flipped), Err(HeaderError::BadChecksum));
}

#[test]
fn checkpoint_round_trips_and_rejects_damage() {
    let c = Checkpoint { segment_base: 100, position: 4096, next_offset: 150 };
    let b = encode_checkpoint(&c);
    assert_eq!(decode_checkpoint(&b), Ok(c));
    assert_eq!(decode_checkpoint(&[0u8; CHECKPOINT_LEN]), Err(HeaderError::BadMagic));
    let mut bad = b;
    bad[CHECKPOINT_POSITION_AT] ^= 1;
    assert_eq!(decode_checkpoint(&bad), Err(HeaderError::BadChecksum));
    assert!(decode_checkpoint(&b[..20]).is_err());
}

#[test]
fn file_names_parse_back_and_reject_lookalikes() {
    assert_eq!(segment_file_name(42), "00000000000000000042.log");
    assert_eq!(parse_file_name(&segment_file_name(u64::MAX), SEGMENT_SUFFIX), Some(u64::MAX));
    assert_eq!(parse_file_name("42.log", SEGMENT_SUFFIX), None);
    assert_eq!(parse_file_name("0000000000000000004x.log", SEGMENT_SUFFIX), None);
    assert_eq!(parse_file_name(&offset_index_file_name(7), SEGMENT_SUFFIX), None);
}

#[test]
fn reserved_header_names_match_format_md() {
    let spec = include_str!("../../FORMAT.md");
    let names: Vec<&str> = spec
        .lines()
        .skip_while(|l| !l.starts_with("### Reserved header names"))
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|row| row.split('|').nth(1).expect("name cell").trim().trim_matches('`'))
        .collect();
    assert_eq!(names, reserved_headers::ALL);
}

#[test]
fn consumer_database_values_round_trip_and_wrong_sizes_are_refused() {
    assert_eq!(state::decode_committed(&state::encode_committed(42, -7)), Ok((42, -7)));
    assert!(state::decode_committed(&[0; 15]).is_err() && state::decode_committed(&[0; 17]).is_err());
    let (k, v) = (state::encode_queue_key(9), state::encode_queue_entry(3, 1_000));
    assert_eq!(state::decode_queue_entry(&k, &v), Ok((9, 3, 1_000)));
    assert!(state::decode_queue_entry(&k, &v[..11]).is_err() && state::decode_queue_entry(&k[..7], &v).is_err());
    assert_eq!(state::decode_queue_head(&state::encode_queue_head(3, 9)), Ok((3, 9)));
    {
        use crate::format::topic_config::*;
        let c = TopicConfigFields {
            when_full: 2,
            bytes_max: 10 << 20,
            block_timeout_ms: 30_000,
            retention_age_ms: 0,
            flags: TOPIC_CONFIG_FLAG_COMPACT_BY_KEY,
            tombstone_retention_ms: 86_400_000,
            retention_bytes: 1 << 30,
        };
        let b = encode_topic_config(&c);
        // A version 1 file (written before retention by size): its first 48 bytes, version 1, a
        // CRC over them; read with no retention by size of its own.
        let mut v1 = b[..TOPIC_CONFIG_V1_CRC_AT].to_vec();
        v1[TOPIC_CONFIG_VERSION_AT..TOPIC_CONFIG_VERSION_AT + 2].copy_from_slice(&TOPIC_CONFIG_VERSION_1.to_le_bytes());
        let crc = crc32fast::hash(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_topic_config(&v1), Ok(TopicConfigFields { retention_bytes: 0, ..c }));
        assert_eq!(decode_topic_config(&b), Ok(c));
        assert!(decode_topic_config(&b[..TOPIC_CONFIG_LEN - 1]).is_err(), "short");
        assert!(decode_topic_config(&encode_topic_config(&TopicConfigFields { flags: 4, ..c })).is_err(), "flags");
        let lz4 = TopicConfigFields { flags: TOPIC_CONFIG_FLAG_COMPRESS_LZ4, ..c };
        assert_eq!(decode_topic_config(&encode_topic_config(&lz4)), Ok(lz4));
        let mut bad = b;
        bad[12] = 3;
        assert!(decode_topic_config(&bad).is_err(), "checksum");
        let mut policy = TopicConfigFields { when_full: 3, ..c };
        assert!(decode_topic_config(&encode_topic_config(&policy)).is_err(), "unknown policy");
        policy.when_full = 0;
        assert_eq!(decode_topic_config(&encode_topic_config(&policy)), Ok(policy));
    }
    assert!(state::decode_queue_head(&state::encode_queue_head(10, 9)).is_err());
    assert!(state::decode_queue_head(&[0; 15]).is_err());
    assert_eq!(state::decode_ack_chunk_key(&state::encode_ack_chunk_key(77)), Some(77));
    assert_eq!(state::decode_ack_chunk_key(&state::encode_queue_key(77)), None);
    assert_eq!(state::decode_ack_chunk_key(b"cursor"), None);
    assert!(state::decode_ack_chunk(&[0; 127]).is_err() && state::decode_ack_chunk(&[0xff; 128]).is_ok());
    assert_eq!(state::decode_queue_cursor(&5u64.to_le_bytes()), Ok(5));
    let p = state::ReplayProgress { topics: vec!["a".into(), "bc".into()], ends: vec![3, 4], last: Some((-1, 1, 2)) };
    let b = state::encode_replay_progress(&p);
    assert_eq!(state::decode_replay_progress(&b), Ok(p));
    for cut in 0..b.len() {
        assert!(state::decode_replay_progress(&b[..cut]).is_err(), "cut at {cut}");
    }
    assert!(state::decode_replay_progress(&[b.as_slice(), &[0]].concat()).is_err(), "trailing byte");
}

#[test]
fn run_entries_round_trip_and_a_flipped_bit_is_caught() {
    let mut out = Vec::new();
    run::encode_run_entry(&mut out, (5, 1, 77), Some(b"key"), b"payload");
    run::encode_run_entry(&mut out, (6, 0, 78), None, b"");
    let h = run::decode_run_entry_header(out.first_chunk().expect("header")).expect("valid header");
    assert_eq!((h.key, h.key_len, h.payload_len, h.entry_len()), ((5, 1, 77), Some(3), 7, 40));
    let body = &out[run::RUN_ENTRY_HEADER_LEN..h.entry_len()];
    assert_eq!(h.check_body(body), Ok((Some(&b"key"[..]), &b"payload"[..])));
    let second = &out[h.entry_len()..];
    let h2 = run::decode_run_entry_header(second.first_chunk().expect("header")).expect("valid header");
    assert_eq!(
        (h2.key, h2.key_len, h2.check_body(&second[run::RUN_ENTRY_HEADER_LEN..])),
        ((6, 0, 78), None, Ok((None, &b""[..])))
    );
    let mut bad = body.to_vec();
    bad[4] ^= 1;
    assert!(h.check_body(&bad).is_err());
}

#[test]
fn clearing_the_batch_flag_keeps_the_frame_valid_and_everything_else_equal() {
    let fields = FrameFields {
        offset: 9,
        durable_offset: 3,
        timestamp: 42,
        key: Some(b"k"),
        headers: &[("h", b"v")],
        payload: b"payload",
        batch_continues: true,
    };
    let mut buf = Vec::new();
    encode_frame(&mut buf, &fields, headers_block_len(fields.headers).expect("headers"));
    let before = decode_frame(&buf, Some(9)).expect("valid");
    assert!(before.batch_continues());
    clear_batch_flag(&mut buf);
    let after = decode_frame(&buf, Some(9)).expect("still valid");
    assert!(!after.batch_continues());
    assert_eq!((after.offset, after.timestamp, after.payload.clone()), (9, 42, before.payload));
    clear_batch_flag(&mut [0u8; 3]); // too short: left alone, no panic
}

#[test]
fn the_frame_checksum_is_crc32_ieee_as_format_md_says() {
    // `frame_crc` reuses one hasher for speed; its answer must be the plain CRC-32 (IEEE) of
    // FORMAT.md: the check value of the standard test input, and crc32fast's for a real frame.
    assert_eq!(frame_crc(b"123456789"), 0xCBF4_3926);
    let f = frame(7, Some(b"k"), &[("h", b"v")], b"payload", false);
    assert_eq!(frame_crc(&f[FRAME_CRC_FROM..]), crc32fast::hash(&f[FRAME_CRC_FROM..]));
    assert_eq!(le_u32(&f, FRAME_CRC_AT), crc32fast::hash(&f[FRAME_CRC_FROM..]), "encode stores that checksum");
}
