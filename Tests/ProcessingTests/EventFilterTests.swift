import Testing

@testable import Processing

/// Lambda's event filtering for Kinesis, from its documentation (invocation-eventfiltering,
/// with-kinesis-filtering) and EventBridge's comparison operators, which Lambda shares.
@Suite struct EventFilterTests {
    static func record(_ data: String, key: String = "1", sequence: UInt64 = 7, timestamp: UInt64 = 1_545_084_650_987)
        -> ProcessorRecord
    {
        ProcessorRecord(sequence: sequence, key: key, data: Array(data.utf8), timestamp: timestamp)
    }

    static func matches(_ pattern: String, _ data: String, key: String = "1") throws -> Bool {
        try EventFilter(parsing: pattern).matches(record(data, key: key))
    }

    static func error(_ pattern: String) -> String? {
        do {
            _ = try EventFilter(parsing: pattern)
            return nil
        } catch {
            return error.message
        }
    }

    // MARK: The documentation's examples

    @Test func docsMetadataAndDataExample() throws {
        // "handle only events with a specific partitionKey … and Location equal to Los Angeles"
        let p = #"{ "partitionKey": [ "1" ], "data": { "Location": [ "Los Angeles" ] }}"#
        #expect(try Self.matches(p, #"{"Location":"Los Angeles"}"#, key: "1"))
        #expect(try !Self.matches(p, #"{"Location":"Los Angeles"}"#, key: "2"))
        #expect(try !Self.matches(p, #"{"Location":"Seattle"}"#, key: "1"))
    }

    @Test func docsNumericRangeExample() throws {
        let p = #"{ "data": { "Temperature": [ {"numeric": [ ">", 50, "<=", 60 ] } ]}}"#
        #expect(try !Self.matches(p, #"{"Temperature": 50}"#))
        #expect(try Self.matches(p, #"{"Temperature": 50.5}"#))
        #expect(try Self.matches(p, #"{"Temperature": 60}"#))
        #expect(try !Self.matches(p, #"{"Temperature": 60.01}"#))
        // Numeric matching is for numbers: the docs' sample event has "Temperature": "46" (a string).
        #expect(try !Self.matches(p, #"{"Temperature": "55"}"#))
    }

    @Test func docsOrderTypeExample() throws {
        // with-kinesis-filtering: only records whose order type is "buy".
        let p = #"{ "data" : { "order" : { "type" : [ "buy" ] } } }"#
        #expect(try Self.matches(p, #"{"record": 12345, "order": {"type": "buy", "stock": "ANYCO", "quantity": 1000}}"#))
        #expect(try !Self.matches(p, #"{"record": 12345, "order": {"type": "sell", "stock": "ANYCO", "quantity": 1000}}"#))
        #expect(try !Self.matches(p, #"{"record": 12345}"#))
    }

    @Test func consoleExampleMatchesEitherValue() throws {
        // "{ "a" : [ 1, 2 ] }: process only the records where field a is equal to 1 or 2" — under data for Kinesis.
        let p = #"{ "data": { "a" : [ 1, 2 ] } }"#
        #expect(try Self.matches(p, #"{"a": 1}"#))
        #expect(try Self.matches(p, #"{"a": 2}"#))
        #expect(try !Self.matches(p, #"{"a": 3}"#))
        #expect(try !Self.matches(p, #"{"a": "1"}"#))
    }

    // MARK: Comparison operators (the docs' table)

    @Test func nullMatchesExplicitNullOnly() throws {
        let p = #"{"data": {"UserID": [ null ]}}"#
        #expect(try Self.matches(p, #"{"UserID": null}"#))
        #expect(try !Self.matches(p, #"{}"#))
        #expect(try !Self.matches(p, #"{"UserID": "null"}"#))
    }

    @Test func emptyStringMatchesEmptyString() throws {
        let p = #"{"data": {"LastName": [""]}}"#
        #expect(try Self.matches(p, #"{"LastName": ""}"#))
        #expect(try !Self.matches(p, #"{"LastName": " "}"#))
        #expect(try !Self.matches(p, #"{"LastName": null}"#))
        #expect(try !Self.matches(p, #"{}"#))
    }

    @Test func equalsIsExactWithoutNormalization() throws {
        let p = #"{"data": {"Name": ["Alice"]}}"#
        #expect(try Self.matches(p, #"{"Name": "Alice"}"#))
        #expect(try !Self.matches(p, #"{"Name": "alice"}"#))
        #expect(try !Self.matches(p, #"{"Name": "Alice "}"#))
        // No Unicode normalization: a precomposed é is not e + combining accent.
        let q = "{\"data\": {\"Name\": [\"Ren\u{E9}\"]}}"
        #expect(try Self.matches(q, "{\"Name\": \"Ren\u{E9}\"}"))
        #expect(try !Self.matches(q, "{\"Name\": \"Rene\u{301}\"}"))
    }

    @Test func equalsIgnoreCase() throws {
        let p = #"{"data": {"Name": [{"equals-ignore-case": "alice"}]}}"#
        #expect(try Self.matches(p, #"{"Name": "ALICE"}"#))
        #expect(try Self.matches(p, #"{"Name": "Alice"}"#))
        #expect(try !Self.matches(p, #"{"Name": "Alicia"}"#))
        #expect(try !Self.matches(p, #"{"Name": 1}"#))
    }

    @Test func andAcrossFieldsOrWithinAField() throws {
        let and = #"{"data": {"Location": ["New York"], "Day": ["Monday"]}}"#
        #expect(try Self.matches(and, #"{"Location": "New York", "Day": "Monday"}"#))
        #expect(try !Self.matches(and, #"{"Location": "New York", "Day": "Tuesday"}"#))
        #expect(try !Self.matches(and, #"{"Location": "New York"}"#))
        let or = #"{"data": {"PaymentType": ["Credit", "Debit"]}}"#
        #expect(try Self.matches(or, #"{"PaymentType": "Debit"}"#))
        #expect(try !Self.matches(or, #"{"PaymentType": "Cash"}"#))
    }

    @Test func anythingBut() throws {
        let p = #"{"data": {"Weather": [{"anything-but": ["Raining"]}]}}"#
        #expect(try Self.matches(p, #"{"Weather": "Sunny"}"#))
        #expect(try !Self.matches(p, #"{"Weather": "Raining"}"#))
        // It needs the field: a record without it does not match.
        #expect(try !Self.matches(p, #"{}"#))
        // A value of another type is "anything but" the listed strings.
        #expect(try Self.matches(p, #"{"Weather": 3}"#))

        let single = #"{"data": {"state": [{"anything-but": "initializing"}]}}"#
        #expect(try Self.matches(single, #"{"state": "running"}"#))
        #expect(try !Self.matches(single, #"{"state": "initializing"}"#))

        let numbers = #"{"data": {"x": [{"anything-but": [100, 200]}]}}"#
        #expect(try Self.matches(numbers, #"{"x": 150}"#))
        #expect(try !Self.matches(numbers, #"{"x": 100}"#))
        #expect(try !Self.matches(numbers, #"{"x": 2e2}"#))
    }

    @Test func anythingButPrefixSuffixAndIgnoreCase() throws {
        let prefix = #"{"data": {"Region": [{"anything-but": {"prefix": "us-"}}]}}"#
        #expect(try Self.matches(prefix, #"{"Region": "eu-west-1"}"#))
        #expect(try !Self.matches(prefix, #"{"Region": "us-east-1"}"#))
        let suffix = #"{"data": {"FileName": [{"anything-but": {"suffix": ".png"}}]}}"#
        #expect(try Self.matches(suffix, #"{"FileName": "a.jpg"}"#))
        #expect(try !Self.matches(suffix, #"{"FileName": "a.png"}"#))
        let ignoreCase = #"{"data": {"state": [{"anything-but": {"equals-ignore-case": ["initializing", "stopped"]}}]}}"#
        #expect(try Self.matches(ignoreCase, #"{"state": "running"}"#))
        #expect(try !Self.matches(ignoreCase, #"{"state": "INITIALIZING"}"#))
        #expect(try !Self.matches(ignoreCase, #"{"state": "Stopped"}"#))
    }

    @Test func numericEqualsComparesNumbers() throws {
        let p = #"{"data": {"Price": [{"numeric": ["=", 100]}]}}"#
        #expect(try Self.matches(p, #"{"Price": 100}"#))
        #expect(try Self.matches(p, #"{"Price": 100.0}"#))
        #expect(try Self.matches(p, #"{"Price": 1e2}"#))
        #expect(try !Self.matches(p, #"{"Price": 100.5}"#))
        #expect(try !Self.matches(p, #"{"Price": "100"}"#))
        // A plain number value also compares numerically.
        let plain = #"{"data": {"Price": [300]}}"#
        #expect(try Self.matches(plain, #"{"Price": 3.0e2}"#))
        #expect(try Self.matches(plain, #"{"Price": 300}"#))
    }

    @Test func numericOneSidedAndClosedRanges() throws {
        let below = #"{"data": {"n": [{"numeric": ["<", 0]}]}}"#
        #expect(try Self.matches(below, #"{"n": -0.5}"#))
        #expect(try !Self.matches(below, #"{"n": 0}"#))
        let closed = #"{"data": {"n": [{"numeric": [">=", 0, "<", 5]}]}}"#
        #expect(try Self.matches(closed, #"{"n": 0}"#))
        #expect(try Self.matches(closed, #"{"n": 4.999}"#))
        #expect(try !Self.matches(closed, #"{"n": 5}"#))
        let eventBridge = #"{"data": {"c-count": [{"numeric": [">", 0, "<=", 5]}]}}"#
        #expect(try Self.matches(eventBridge, #"{"c-count": 5}"#))
        #expect(try !Self.matches(eventBridge, #"{"c-count": 0}"#))
    }

    @Test func existsAndDoesNotExist() throws {
        let exists = #"{"data": {"ProductName": [{"exists": true}]}}"#
        #expect(try Self.matches(exists, #"{"ProductName": "x"}"#))
        #expect(try Self.matches(exists, #"{"ProductName": null}"#))
        #expect(try !Self.matches(exists, #"{"Other": 1}"#))
        let absent = #"{"data": {"ProductName": [{"exists": false}]}}"#
        #expect(try Self.matches(absent, #"{"Other": 1}"#))
        #expect(try !Self.matches(absent, #"{"ProductName": ""}"#))
        // Exists looks at leaves: an object in that place is not a value.
        #expect(try Self.matches(absent, #"{"ProductName": {"a": 1}}"#))
        #expect(try !Self.matches(exists, #"{"ProductName": {"a": 1}}"#))
    }

    @Test func prefixAndSuffix() throws {
        let prefix = #"{"data": {"Region": [{"prefix": "us-"}]}}"#
        #expect(try Self.matches(prefix, #"{"Region": "us-east-2"}"#))
        #expect(try !Self.matches(prefix, #"{"Region": "eu-west-1"}"#))
        #expect(try !Self.matches(prefix, #"{"Region": "US-east-2"}"#))
        let prefixCase = #"{"data": {"service": [{"prefix": {"equals-ignore-case": "eventb"}}]}}"#
        #expect(try Self.matches(prefixCase, #"{"service": "EventBridge"}"#))
        let suffix = #"{"data": {"FileName": [{"suffix": ".png"}]}}"#
        #expect(try Self.matches(suffix, #"{"FileName": "image.png"}"#))
        #expect(try !Self.matches(suffix, #"{"FileName": "image.PNG"}"#))
        #expect(try !Self.matches(suffix, #"{"FileName": ".pn"}"#))
        let suffixCase = #"{"data": {"FileName": [{"suffix": {"equals-ignore-case": ".png"}}]}}"#
        #expect(try Self.matches(suffixCase, #"{"FileName": "image.PNG"}"#))
    }

    @Test func booleans() throws {
        let p = #"{"data": {"fail": [true]}}"#
        #expect(try Self.matches(p, #"{"fail": true}"#))
        #expect(try !Self.matches(p, #"{"fail": false}"#))
        #expect(try !Self.matches(p, #"{"fail": "true"}"#))
    }

    // MARK: Arrays and nesting in the event

    @Test func arraysInTheEventMatchIfAnyElementMatches() throws {
        let p = #"{"data": {"tags": ["urgent"]}}"#
        #expect(try Self.matches(p, #"{"tags": ["low", "urgent"]}"#))
        #expect(try !Self.matches(p, #"{"tags": ["low"]}"#))
        #expect(try !Self.matches(p, #"{"tags": []}"#))
        #expect(try Self.matches(p, #"{"tags": [["urgent"]]}"#))
        let n = #"{"data": {"n": [{"numeric": [">", 10]}]}}"#
        #expect(try Self.matches(n, #"{"n": [1, 2, 30]}"#))
        let absent = #"{"data": {"tags": [{"exists": false}]}}"#
        #expect(try Self.matches(absent, #"{"tags": []}"#))
    }

    @Test func nestedPatternsOverArraysOfObjects() throws {
        let p = #"{"data": {"items": {"sku": ["A"], "qty": [{"numeric": [">", 1]}]}}}"#
        #expect(try Self.matches(p, #"{"items": [{"sku": "B", "qty": 5}, {"sku": "A", "qty": 2}]}"#))
        // Both conditions must hold in the same element.
        #expect(try !Self.matches(p, #"{"items": [{"sku": "B", "qty": 5}, {"sku": "A", "qty": 1}]}"#))
    }

    @Test func deepNesting() throws {
        let p = #"{"data": {"a": {"b": {"c": {"d": ["x"]}}}}}"#
        #expect(try Self.matches(p, #"{"a": {"b": {"c": {"d": "x"}}}}"#))
        #expect(try !Self.matches(p, #"{"a": {"b": {"c": "x"}}}"#))
    }

    // MARK: Data that is not JSON (with-kinesis-filtering's table)

    @Test func nonJSONDataMatchesOnlyPatternsThatDoNotReadData() throws {
        #expect(try !Self.matches(#"{"data": {"a": [{"exists": false}]}}"#, "plain text"))
        #expect(try !Self.matches(#"{"data": {"a": ["x"]}}"#, "\u{1}\u{2}"))
        #expect(try Self.matches(#"{"partitionKey": ["k"]}"#, "plain text", key: "k"))
        #expect(try !Self.matches(#"{"partitionKey": ["k"]}"#, "plain text", key: "j"))
        #expect(try Self.matches(#"{"partitionKey": [{"prefix": "agent-"}]}"#, "\u{FF}", key: "agent-7"))
    }

    @Test func metadataFields() throws {
        let r = Self.record("{}", key: "k", sequence: 42, timestamp: 1_545_084_650_987)
        #expect(try EventFilter(parsing: #"{"sequenceNumber": ["00000000000000000042"]}"#).matches(r))
        #expect(try !EventFilter(parsing: #"{"sequenceNumber": ["42"]}"#).matches(r))
        #expect(try EventFilter(parsing: #"{"approximateArrivalTimestamp": [{"numeric": [">", 1545084650]}]}"#).matches(r))
        #expect(try !EventFilter(parsing: #"{"approximateArrivalTimestamp": [{"numeric": [">", 1545084651]}]}"#).matches(r))
        #expect(try EventFilter(parsing: #"{"kinesisSchemaVersion": ["1.0"]}"#).matches(r))
    }

    // MARK: Bad patterns are refused, naming what is wrong

    @Test func invalidPatternsNameTheProblem() {
        #expect(Self.error(#"{"data": {"a": [{"wildcard": "*x"}]}}"#)?.contains("\"wildcard\"") == true)
        #expect(Self.error(#"{"data": {"a": [{"cidr": "10.0.0.0/24"}]}}"#)?.contains("\"cidr\"") == true)
        #expect(Self.error(#"{"data": {"$or": [{"a": [1]}, {"b": [2]}]}}"#)?.contains("\"$or\"") == true)
        #expect(Self.error(#"{"data": {"a": [{"begins-with": "x"}]}}"#)?.contains("\"begins-with\"") == true)
        #expect(Self.error(#"{"data": {"a": [{"numeric": ["!=", 3]}]}}"#)?.contains("\"!=\"") == true)
        #expect(Self.error(#"{"data": {"a": [{"numeric": [">", "x"]}]}}"#) != nil)
        #expect(Self.error(#"{"data": {"a": [{"numeric": ["<", 5, ">", 0]}]}}"#) != nil)
        #expect(Self.error(#"{"data": {"a": [{"numeric": [">", 5, "<", 1]}]}}"#)?.contains("lower bound") == true)
        #expect(Self.error(#"{"data": {"a": [{"numeric": ["=", 3, "<", 5]}]}}"#) != nil)
        #expect(Self.error(#"{"data": {"a": [{"exists": "yes"}]}}"#)?.contains("exists") == true)
        #expect(Self.error(#"{"data": {"a": [{"prefix": 3}]}}"#)?.contains("prefix") == true)
        #expect(Self.error(#"{"data": {"a": [{"anything-but": ["x", 1]}]}}"#)?.contains("anything-but") == true)
        #expect(Self.error(#"{"data": {"a": [{"anything-but": {"prefix": ""}}]}}"#) != nil)
        #expect(Self.error(#"{"data": {"a": [{"anything-but": {"wildcard": "x"}}]}}"#)?.contains("wildcard") == true)
        #expect(Self.error(#"{"data": {"a": [{"prefix": "x", "suffix": "y"}]}}"#)?.contains("one key") == true)
        #expect(Self.error(#"{"data": {"a": []}}"#)?.contains("data.a") == true)
        #expect(Self.error(#"{"data": {"a": "x"}}"#)?.contains("data.a") == true)
        #expect(Self.error(#"{"data": {"a": {}}}"#)?.contains("data.a") == true)
        #expect(Self.error(#"{"data": {"a": [[1]]}}"#) != nil)
        #expect(Self.error(#"{"data": ["x"]}"#)?.contains("data") == true)
        #expect(Self.error(#"{"eventName": ["aws:kinesis:record"]}"#)?.contains("eventName") == true)
        #expect(Self.error(#"{"partitionKey": "k"}"#)?.contains("partitionKey") == true)
        #expect(Self.error(#"{}"#) != nil)
        #expect(Self.error(#"["a"]"#) != nil)
        #expect(Self.error(#"{"data": {"a": [1]}"#)?.contains("JSON") == true)
        #expect(Self.error(#"{"data": {"a": [1]}, "data": {"b": [2]}}"#)?.contains("twice") == true)
    }

    @Test func limitsAreCheckedBeforeParsing() {
        let big = #"{"data": {"a": [""# + String(repeating: "x", count: 5000) + #""]}}"#
        #expect(Self.error(big)?.contains("4096") == true)
        // Deep nesting within the size limit is refused by depth, not by recursion.
        let deep = #"{"data": "# + String(repeating: #"{"a": "#, count: 40) + "[1]" + String(repeating: "}", count: 41)
        #expect(deep.utf8.count <= 4096)
        #expect(Self.error(deep) != nil)
    }

    // MARK: Sets of patterns

    @Test func setsAreOredAndEmptyMatchesAll() throws {
        let set = try FilterSet(patterns: [#"{"data": {"type": ["a"]}}"#, #"{"partitionKey": ["k"]}"#])
        #expect(set.matches(Self.record(#"{"type": "a"}"#, key: "z")))
        #expect(set.matches(Self.record("not json", key: "k")))
        #expect(!set.matches(Self.record(#"{"type": "b"}"#, key: "z")))
        #expect(try FilterSet(patterns: []).matches(Self.record("anything")))
    }

    @Test func setsRefuseMoreThanFivePatternsAndNameTheBadOne() {
        let ok = #"{"data": {"a": [1]}}"#
        #expect(throws: FilterError.self) { try FilterSet(patterns: Array(repeating: ok, count: 6)) }
        #expect(throws: Never.self) { try FilterSet(patterns: Array(repeating: ok, count: 5)) }
        do {
            _ = try FilterSet(patterns: [ok, #"{"data": {"a": [{"nope": 1}]}}"#])
            Issue.record("accepted an unknown operator")
        } catch {
            #expect(error.message.hasPrefix("filters[1]"))
            #expect(error.message.contains("\"nope\""))
        }
    }
}
