"""The producer `labs bench example-1` measures `labs produce` against: boto3's Kinesis client
(botocore's, which `boto3.client("kinesis")` returns; MiniStack brings botocore into labs'
virtualenv) sending PutRecords calls of 500 records, one after another, or from a pool of threads
sharing one client, each call re-sending the entries it refused.

Reads a job as JSON on stdin: endpoint, region, stream, threads, records ([key, data] pairs).
Prints {"records", "calls", "seconds"}: only the calls are timed, not start-up or the job's parsing.
"""

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import botocore.session
from botocore.config import Config

BATCH = 500


def main():
    job = json.load(sys.stdin)
    threads = job["threads"]
    client = botocore.session.get_session().create_client(
        "kinesis",
        region_name=job["region"],
        endpoint_url=job["endpoint"],
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(max_pool_connections=max(10, threads)),
    )
    records = [{"PartitionKey": key, "Data": data.encode()} for key, data in job["records"]]
    batches = [records[i : i + BATCH] for i in range(0, len(records), BATCH)]

    def put(batch):
        calls = 0
        for attempt in range(8):
            out = client.put_records(StreamName=job["stream"], Records=batch)
            calls += 1
            if out["FailedRecordCount"] == 0:
                return calls
            batch = [record for record, answer in zip(batch, out["Records"]) if "ErrorCode" in answer]
            time.sleep(0.05 * 2**attempt)
        raise SystemExit(f"{len(batch)} records were still refused after 8 attempts")

    started = time.perf_counter()
    if threads == 1:
        calls = sum(put(batch) for batch in batches)
    else:
        with ThreadPoolExecutor(threads) as pool:
            calls = sum(pool.map(put, batches))
    seconds = time.perf_counter() - started
    json.dump({"records": len(records), "calls": calls, "seconds": seconds}, sys.stdout)


main()
