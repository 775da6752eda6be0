"""Numbers: canonical forms as DynamoDB returns them, 38 digits exact."""
import tandem


class NumberTests(tandem.DynamoTest):
    sort_key = False

    def roundtrip(self, text):
        self.ddb.put_item(TableName=self.table, Item={"pk": {"S": "n"}, "v": {"N": text}})
        return self.ddb.get_item(TableName=self.table, Key={"pk": {"S": "n"}})["Item"]["v"]["N"]

    def test_canonical_forms(self):
        # Leading zeros, exponents and trailing zeros are normalised the way DynamoDB does.
        for text, want in [("00042", "42"), ("1.5E2", "150"), ("-0.0150", "-0.015"), ("1e-3", "0.001"), ("0.0", "0")]:
            self.assertEqual(self.roundtrip(text), want, text)

    def test_38_digits_exact(self):
        # 38 significant digits survive, and counters add exactly (no float rounding).
        big = "9" * 37 + "8"
        self.assertEqual(self.roundtrip(big), big)
        r = self.ddb.update_item(TableName=self.table, Key={"pk": {"S": "n"}}, UpdateExpression="ADD v :one",
                                 ExpressionAttributeValues={":one": {"N": "1"}}, ReturnValues="UPDATED_NEW")
        self.assertEqual(r["Attributes"]["v"]["N"], "9" * 38)

    def test_invalid_numbers_refused(self):
        # Not a number, or more than 38 digits: ValidationException.
        for text in ["abc", "1" * 39]:
            code = tandem.error_code(lambda: self.ddb.put_item(TableName=self.table, Item={"pk": {"S": "x"}, "v": {"N": text}}))
            self.assertEqual(code, "ValidationException", text)
