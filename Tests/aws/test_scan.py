"""Scan: filters, paging, parallel segments."""
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
