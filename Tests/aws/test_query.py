"""Query: key conditions, paging with Limit/LastEvaluatedKey, order, filter, Select COUNT."""
import tandem


class QueryTests(tandem.DynamoTest):
    def setUp(self):
        super().setUp()
        # Partition "p" holds sort keys 0..19; partition "other" holds one item that must never show.
        for start in range(0, 20, 10):
            self.ddb.batch_write_item(RequestItems={self.table: [
                {"PutRequest": {"Item": {**self.key("p", i), "odd": {"BOOL": i % 2 == 1}}}} for i in range(start, start + 10)]})
        self.ddb.put_item(TableName=self.table, Item=self.key("other", 5))

    def query(self, **kw):
        values = {":p": {"S": "p"}, **kw.pop("values", {})}
        return self.ddb.query(TableName=self.table, ExpressionAttributeValues=values, **kw)

    def sks(self, page):
        return [int(i["sk"]["N"]) for i in page["Items"]]

    def test_key_condition_operators(self):
        # =, <, <=, >, >=, BETWEEN on the sort key, in both directions and in pages of 2 (the walk
        # starts at the condition's bound and resumes at LastEvaluatedKey).
        cases = {"sk = :a": [3], "sk < :a": [0, 1, 2], "sk <= :a": [0, 1, 2, 3], "sk > :b": [18, 19], "sk >= :b": [17, 18, 19],
                 "sk BETWEEN :a AND :c": [3, 4, 5]}
        for cond, want in cases.items():
            values = {k: v for k, v in {":a": {"N": "3"}, ":b": {"N": "17"}, ":c": {"N": "5"}}.items() if k in cond}
            page = self.query(KeyConditionExpression="pk = :p AND " + cond, values=values)
            self.assertEqual(self.sks(page), want, cond)
            for forward in (True, False):
                seen, start = [], None
                while True:
                    kw = dict(KeyConditionExpression="pk = :p AND " + cond, values=values, Limit=2, ScanIndexForward=forward)
                    if start:
                        kw["ExclusiveStartKey"] = start
                    page = self.query(**kw)
                    seen += self.sks(page)
                    start = page.get("LastEvaluatedKey")
                    if not start:
                        break
                self.assertEqual(seen, want if forward else want[::-1], (cond, forward))

    def test_paging_forward_and_backward(self):
        # Limit pages through the partition; LastEvaluatedKey resumes exactly; none after the last page.
        for forward in (True, False):
            seen, start, pages = [], None, 0
            while True:
                kw = dict(KeyConditionExpression="pk = :p", Limit=7, ScanIndexForward=forward)
                if start:
                    kw["ExclusiveStartKey"] = start
                page = self.query(**kw)
                seen += self.sks(page)
                pages += 1
                start = page.get("LastEvaluatedKey")
                if not start:
                    break
            self.assertEqual(seen, list(range(20)) if forward else list(range(19, -1, -1)))
            self.assertEqual(pages, 3)

    def test_paginator(self):
        # boto3's own paginator follows LastEvaluatedKey.
        pages = self.ddb.get_paginator("query").paginate(TableName=self.table, KeyConditionExpression="pk = :p",
                                                          ExpressionAttributeValues={":p": {"S": "p"}}, PaginationConfig={"PageSize": 6})
        self.assertEqual(sum(p["Count"] for p in pages), 20)

    def test_filter_counts_and_select_count(self):
        # The filter runs after Limit: ScannedCount counts items read, Count the ones kept.
        page = self.query(KeyConditionExpression="pk = :p", FilterExpression="odd = :t", Limit=10, values={":t": {"BOOL": True}})
        self.assertEqual((page["Count"], page["ScannedCount"]), (5, 10))
        count = self.query(KeyConditionExpression="pk = :p", Select="COUNT")
        self.assertEqual(count["Count"], 20)
        self.assertNotIn("Items", count)


class StringSortKeyQueryTests(tandem.DynamoTest):
    sort_key_type = "S"

    def test_begins_with(self):
        # begins_with on a string sort key, e.g. dates as prefixes.
        for sk in ["2026-01-02", "2026-02-01", "2025-12-31", "2027-01-01", "2026"]:
            self.ddb.put_item(TableName=self.table, Item=self.key("c", sk))
        page = self.ddb.query(TableName=self.table, KeyConditionExpression="pk = :p AND begins_with(sk, :y)",
                              ExpressionAttributeValues={":p": {"S": "c"}, ":y": {"S": "2026-"}})
        self.assertEqual([i["sk"]["S"] for i in page["Items"]], ["2026-01-02", "2026-02-01"])
        back = self.ddb.query(TableName=self.table, KeyConditionExpression="pk = :p AND begins_with(sk, :y)", ScanIndexForward=False,
                              ExpressionAttributeValues={":p": {"S": "c"}, ":y": {"S": "2026-"}})
        self.assertEqual([i["sk"]["S"] for i in back["Items"]], ["2026-02-01", "2026-01-02"])
