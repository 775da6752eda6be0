import Testing

@testable import Processing

@Suite struct SequenceTextTests {
    @Test func sequencesAreTwentyDigitsAndParseBack() {
        #expect(SequenceText.format(42) == "00000000000000000042")
        #expect(SequenceText.parse("00000000000000000042") == 42)
        #expect(SequenceText.parse(SequenceText.format(UInt64.max)) == UInt64.max)
        #expect(SequenceText.parse("") == nil)
        #expect(SequenceText.parse("12a") == nil)
        #expect(SequenceText.parse("-1") == nil)
        #expect(SequenceText.parse("123456789012345678901") == nil)
    }
}
