"""A Lambda handler for a Kinesis event source, written as Lambda users write them: with
aws-lambda-powertools' batch processor, reporting partial batch failures. A record whose data is
JSON with "fail": true fails; the others succeed. When every record fails, powertools raises
(BatchProcessingError), which Lambda reports as an Unhandled function error. A record with
"crash": true makes the handler itself raise before the batch processor runs (a bug outside the
record handler): the whole batch fails, whatever the other records are."""

import base64
import json

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import (
    KinesisStreamRecord,
)

processor = BatchProcessor(event_type=EventType.KinesisDataStreams)

# What the handler saw, in order: (sequence number, partition key, decoded data), for tests that
# ask the adapter what was delivered.
seen = []


def record_handler(record: KinesisStreamRecord):
    data = record.kinesis.data_as_bytes()
    seen.append((record.kinesis.sequence_number, record.kinesis.partition_key, data.decode("utf-8", "replace")))
    try:
        payload = json.loads(data)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and payload.get("fail") is True:
        raise ValueError(f"record {record.kinesis.sequence_number} asked to fail")


class Crash(Exception):
    pass


def lambda_handler(event, context):
    for r in event.get("Records", []):
        try:
            payload = json.loads(base64.b64decode(r["kinesis"]["data"]))
        except ValueError:
            continue
        if isinstance(payload, dict) and payload.get("crash") is True:
            raise Crash(f"record {r['kinesis']['sequenceNumber']} crashed the handler")
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
