//! The KPL decoder and the word counter on arbitrary input: never a panic.
//!
//! Each input is tried twice: as a Kinesis record's data exactly as it came
//! (almost always stopped by the digest check), and framed as an aggregate
//! with a correct MD5 of the input, so that the protobuf decoder, the index
//! checks and the counting of the decoded user records see it too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};
use shardwise::aggregation::{MAGIC, deaggregate_batch};
use shardwise::record::{Position, Record, SequenceNumber, ShardId};
use shardwise::wordcount::count_batch;

fn record(data: Vec<u8>) -> Record {
    Record {
        stream: "fuzz".into(),
        shard_id: ShardId::new("shardId-000000000000"),
        position: Position::new(SequenceNumber::parse("4956816737").expect("constant"), 0),
        partition_key: "k".into(),
        arrival: None,
        data: data.into(),
    }
}

fuzz_target!(|input: &[u8]| {
    let mut framed = MAGIC.to_vec();
    framed.extend_from_slice(input);
    framed.extend_from_slice(&Md5::digest(input));
    let (users, bad) = deaggregate_batch(vec![record(input.to_vec()), record(framed)]);
    // Each record is either its user records (an aggregate may hold none)
    // or one bad record.
    assert!(bad.len() <= 2);
    for pair in users.windows(2) {
        let (a, b) = (&pair[0].position, &pair[1].position);
        assert!(b.sub_sequence == 0 || b.sub_sequence == a.sub_sequence + 1);
    }
    let counted = count_batch(&users);
    assert!(counted.records_counted + counted.bad.len() == users.len());
});
