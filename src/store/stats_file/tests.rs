use super::*;

fn sample_file() -> StatsFile {
    let mut latency = [0u64; crate::log::LATENCY_BUCKETS];
    latency[40] = 12;
    latency[41] = 3;
    StatsFile {
        written_ms: 1_800_000_000_000,
        pid: 42,
        topics: vec![TopicFigures {
            topic: "orders".into(),
            first_offset: 1,
            next_offset: 99,
            bytes: 4096,
            used_bytes: 3000,
            budget_bytes: Some(1 << 20),
            fsyncs: 15,
            synced_records: 98,
            fsync_latency: LatencyHistogram::from_counts(latency),
        }],
        groups: vec![GroupFigures { topic: "orders".into(), group: "billing".into(), committed: 50, lag_ms: 1_500 }],
        queues: vec![QueueFigures {
            topic: "orders".into(),
            queue: "w".into(),
            backlog: 7,
            ready: 1,
            leased: 2,
            scheduled: 3,
            dead_lettered: 4,
            delivered: 5,
            redelivered: 2,
            acked: 6,
            leases_expiring: 1,
        }],
        recoveries: vec![RecoveryFigures {
            topic: "orders".into(),
            checkpoint_used: true,
            scanned_bytes: 10,
            scanned_records: 1,
            truncated_bytes: 3,
            dropped_records: 0,
            removed_files: 1,
            quarantined_files: 0,
            zero_tail_bytes: 4,
            index_rebuilt: false,
            repaired: false,
        }],
        history: vec![
            History { topic: "orders".into(), group: None, points: vec![(1_000, 10), (61_000, 70)] },
            History { topic: "orders".into(), group: Some("billing".into()), points: vec![(1_000, 5)] },
        ],
    }
}

#[test]
fn a_stats_file_reads_back_as_written_and_only_when_whole() {
    let file = sample_file();
    let text = text::render(&file);
    assert_eq!(StatsFile::parse(&text), Some(file));
    let cut = &text[..text.len() - "end\n".len()];
    assert_eq!(StatsFile::parse(cut), None, "a file cut short reads as absent");
    assert_eq!(StatsFile::parse(&text.replace("next 99", "next x")), None, "a bad number reads as absent");
    assert_eq!(StatsFile::parse(&text.replace("evlog-stats 1", "evlog-stats 2")), None, "another version");
    assert_eq!(StatsFile::parse(&text.replace("41:3", "88:3")), None, "a bucket past the last");
    assert_eq!(StatsFile::parse(&text.replace("checkpoint 1", "checkpoint 2")), None, "a flag is 0 or 1");
    assert_eq!(StatsFile::parse(&format!("{text}topic x\n")), None, "nothing after the end line");
}

#[test]
fn history_gives_a_rate_per_minute_between_its_samples() {
    let h = History { topic: "t".into(), group: None, points: vec![(0, 0), (60_000, 600), (120_000, 600)] };
    assert_eq!(h.rates(), vec![(60_000, 10.0), (120_000, 0.0)]);
}

#[test]
fn the_holder_samples_once_every_sixty_writes_and_keeps_the_last_hour() {
    let mut samples = Samples::default();
    let mut last = StatsFile::default();
    for i in 0..(HISTORY_EVERY_WRITES * 70) {
        let mut file = sample_file();
        file.written_ms = i as i64 * 1000;
        file.topics[0].next_offset = i;
        samples.record(&mut file);
        last = file;
    }
    let topic = last.history.iter().find(|h| h.group.is_none()).expect("the topic's series");
    assert_eq!(topic.points.len(), HISTORY_SAMPLES, "an hour of minutes and the sample an hour ago");
    assert!(topic.points.windows(2).all(|w| w[1].0 - w[0].0 == 60_000), "one a minute at one write a second");
    assert_eq!(topic.rates().last().map(|r| r.1), Some(1.0), "one record a second");
}

#[test]
fn format_md_specifies_the_stats_file_this_code_writes() {
    let spec = include_str!("../../../FORMAT.md");
    let section = spec.split("## Stats file").nth(1).expect("FORMAT.md has a Stats file section");
    assert!(section.contains(&format!("`<root>/{STATS_FILE}`")));
    assert!(section.contains(&format!("\n{MAGIC}\n")), "the first line");
    assert!(section.contains(&format!("over `{}` buckets", crate::log::LATENCY_BUCKETS)));
    assert!(section.contains(&format!("at most {} MiB", STATS_FILE_BYTES_MAX >> 20)));
    assert!(section.contains(&format!("every {HISTORY_EVERY_WRITES}th write")), "the sampling");
    assert!(section.contains(&format!("the last {HISTORY_SAMPLES} samples")));
    // Every line kind the parser takes is in the spec's block.
    let text = text::render(&sample_file());
    for line in text.lines() {
        let kind = line.split(' ').next().expect("a word");
        assert!(section.contains(&format!("\n{kind}")), "FORMAT.md shows the {kind} line");
    }
}
