#!/usr/bin/env python3
"""The Python baseline of the Lambda handler: Powertools for AWS Lambda
(Python) BatchProcessor + aws-kinesis-agg, doing the same count, in-process.

    python benches/powertools_baseline.py EVENT_JSON [--iterations N]

EVENT_JSON is a Lambda Kinesis event as a file (`-` for stdin), plain or
KPL-aggregated records or both. Run it with the venv of
scripts/install-test-tools, which pins aws-lambda-powertools and
aws-kinesis-agg:

    eval "$(scripts/install-test-tools)"
    "$SHARDWISE_PYTHON" benches/powertools_baseline.py event.json

Each iteration builds a fresh BatchProcessor(KinesisDataStreams) and calls
process_partial_response on the event with a record handler that
de-aggregates the record with aws_kinesis_agg, base64-decodes each user
record, decodes it as UTF-8 and adds `str.split()`'s words to one Counter
per iteration. Records that are empty or not valid UTF-8 are skipped and
counted, like the Rust core's bad records. One warm-up iteration, then N
(default 5), each timed with time.process_time() (CPU time, user + sys, of
this process) around the process_partial_response call only.

Not timed unless --include-parse: json.loads of the event. Lambda's Python runtime parses the
invocation's JSON (C-accelerated json) before it calls the handler, so a
handler is given a dict; the Rust handler's deserialization is likewise
outside what it is compared on here. Also not timed: building the
processor and the handler (a Lambda function builds them once, at cold
start) and a gc.collect() before each iteration, so that one iteration's
garbage is not collected on the next one's clock.

Prints one JSON line to stdout:

    {"iterations": N, "records": <Kinesis records in the event>,
     "user_records": <records after de-aggregation>,
     "cpu_seconds_per_batch": <mean of the N>, "cpu_seconds_min": <min>,
     "words": <total words>, "counts": {word: count, ...} (sorted by word),
     "bad_records": <empty or not UTF-8>,
     "batch_item_failures": <len of the response's batchItemFailures>}

Differences from the Rust core worth knowing when comparing counts:
`str.split()` also splits on U+001C..U+001F, which are not Unicode
White_Space (the Rust core keeps them inside words); and aws_kinesis_agg
passes a damaged aggregate (bad MD5 or protobuf) through as one plain
record, where the Rust core skips it as a bad record.
"""

import argparse
import base64
import collections
import gc
import json
import sys
import time

from aws_kinesis_agg.deaggregator import iter_deaggregate_records
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)


class FakeLambdaContext:
    """The few LambdaContext attributes a handler might read."""

    function_name = "shardwise-powertools-baseline"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:shardwise-powertools-baseline"
    memory_limit_in_mb = 1024
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/shardwise-powertools-baseline"
    log_stream_name = "baseline"

    @staticmethod
    def get_remaining_time_in_millis():
        return 900_000


class Tally:
    """What one iteration counted."""

    def __init__(self):
        self.counts = collections.Counter()
        self.user_records = 0
        self.bad_records = 0


def make_record_handler(tally):
    counts = tally.counts

    def record_handler(record):
        # Powertools hands over a KinesisStreamRecord wrapping the event's
        # record dict as is; its data is still base64 (it decodes only when
        # asked, e.g. record.kinesis.data_as_bytes()). aws_kinesis_agg takes
        # the raw dict: it base64-decodes it, and yields either that same
        # dict (not aggregated) or one new dict per user record, whose data
        # it has base64-*encoded* again, as bytes. Either way: decode here.
        for user in iter_deaggregate_records(record.raw_event):
            tally.user_records += 1
            data = base64.b64decode(user["kinesis"]["data"])
            if not data:
                tally.bad_records += 1
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                tally.bad_records += 1
                continue
            counts.update(text.split())

    return record_handler


def run_once(event, context, raw=None):
    """One batch: (CPU seconds, Tally, response). With `raw` (the event's
    JSON text), parsing it is timed too and `event` is ignored."""
    tally = Tally()
    handler = make_record_handler(tally)
    processor = BatchProcessor(event_type=EventType.KinesisDataStreams)
    gc.collect()
    start = time.process_time()
    if raw is not None:
        event = json.loads(raw)
    response = process_partial_response(
        event=event, record_handler=handler, processor=processor, context=context
    )
    elapsed = time.process_time() - start
    return elapsed, tally, response


def main():
    parser = argparse.ArgumentParser(
        description="Powertools BatchProcessor + aws-kinesis-agg word count of a "
        "Lambda Kinesis event, CPU-timed in-process; prints one JSON line."
    )
    parser.add_argument("event_json", metavar="EVENT_JSON", help="Lambda Kinesis event file, - for stdin")
    parser.add_argument("--iterations", type=int, default=5, metavar="N", help="timed iterations after one warm-up (default 5)")
    parser.add_argument("--include-parse", action="store_true", help="time json.loads of the event text too (the whole invocation's work)")
    args = parser.parse_args()
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")

    if args.event_json == "-":
        text = sys.stdin.read()
    else:
        with open(args.event_json, "rb") as f:
            text = f.read()
    event = json.loads(text)
    raw = text if args.include_parse else None
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        parser.error(f"{args.event_json}: not a Lambda Kinesis event (no Records list)")
    context = FakeLambdaContext()

    _, first, first_response = run_once(event, context, raw)  # warm-up
    times = []
    for _ in range(args.iterations):
        elapsed, tally, response = run_once(event, context, raw)
        times.append(elapsed)
        if (tally.counts, tally.user_records, tally.bad_records, response) != (
            first.counts, first.user_records, first.bad_records, first_response
        ):
            sys.exit("powertools_baseline: iterations disagree on the counts")

    print(
        json.dumps(
            {
                "iterations": args.iterations,
                "records": len(records),
                "user_records": first.user_records,
                "cpu_seconds_per_batch": sum(times) / len(times),
                "cpu_seconds_min": min(times),
                "words": sum(first.counts.values()),
                "counts": dict(sorted(first.counts.items())),
                "bad_records": first.bad_records,
                "batch_item_failures": len(first_response.get("batchItemFailures", [])),
            },
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main()
