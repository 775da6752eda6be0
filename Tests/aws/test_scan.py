"""Scan: filters, paging, parallel segments."""
from concurrent.futures import ThreadPoolExecutor

import tandem


class ScanTests(tandem.DynamoTest):
    sort_key = False

    def setUp(self):
        super().setUp()
        self.ddb.batch_write_item(RequestItems={self.table: [
            {"PutRequest": {"Item": {"pk": {"S": "k%02d" % i}, "n": {"N": str(i)}}}} for i in range(25)]})

    def test_filter_and_paging(self):
        # Scan pages with Limit; the filter keeps n >= 20 across the pages.
        kept, start = [], None
        while True:
            kw = dict(TableName=self.table, Limit=8, FilterExpression="n >= :x", ExpressionAttributeValues={":x": {"N": "20"}})
            if start:
                kw["ExclusiveStartKey"] = start
            page = self.ddb.scan(**kw)
            kept += [int(i["n"]["N"]) for i in page["Items"]]
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        self.assertEqual(sorted(kept), [20, 21, 22, 23, 24])

    def test_segments_partition_the_table(self):
        # Every item is in exactly one of the TotalSegments segments.
        keys = []
        for s in range(4):
            keys += [i["pk"]["S"] for i in self.ddb.scan(TableName=self.table, Segment=s, TotalSegments=4)["Items"]]
        self.assertEqual(sorted(keys), ["k%02d" % i for i in range(25)])

    def test_parallel_scan_returns_every_item_once(self):
        # 8 workers scan 8 segments at once, each in pages of 7 (ExclusiveStartKey continuation):
        # together they return each of 225 items exactly once, and every segment has a share.
        for b in range(8):
            self.ddb.batch_write_item(RequestItems={self.table: [
                {"PutRequest": {"Item": {"pk": {"S": "p%03d" % (25 + b * 25 + i)}}}} for i in range(25)]})

        def scan_segment(segment):
            client = tandem.client("dynamodb", 0)  # one client per thread, as boto3 advises
            keys, start = [], None
            while True:
                kw = dict(TableName=self.table, Segment=segment, TotalSegments=8, Limit=7)
                if start:
                    kw["ExclusiveStartKey"] = start
                page = client.scan(**kw)
                keys += [i["pk"]["S"] for i in page["Items"]]
                start = page.get("LastEvaluatedKey")
                if not start:
                    return keys

        with ThreadPoolExecutor(8) as pool:
            shares = list(pool.map(scan_segment, range(8)))
        every = [k for share in shares for k in share]
        self.assertEqual(len(every), 225)
        self.assertEqual(sorted(every), sorted(["k%02d" % i for i in range(25)] + ["p%03d" % i for i in range(25, 225)]))
        self.assertTrue(all(shares), [len(s) for s in shares])

    def test_start_key_of_another_segment_is_refused(self):
        # A LastEvaluatedKey belongs to its segment; handing it to another is a ValidationException.
        page = self.ddb.scan(TableName=self.table, Segment=0, TotalSegments=2, Limit=1)
        start = page["LastEvaluatedKey"]
        self.assertEqual(tandem.error_code(lambda: self.ddb.scan(
            TableName=self.table, Segment=1, TotalSegments=2, ExclusiveStartKey=start)), "ValidationException")
