import Storage
import TandemCore
import TandemNode
import TandemTestKit
import Testing
import Transport

@Suite struct FrameDecoderTests {
    func feed(_ decoder: inout FrameDecoder, _ bytes: [UInt8]) throws -> [Frame] {
        try bytes.withUnsafeBytes { try decoder.feed($0) }
    }

    @Test func framesSurviveAnyChunking() throws {
        var rng = SeededGenerator(seed: 3)
        let frames = (0..<50).map { i in
            Frame(
                kind: UInt8(i % 3 + 1), requestID: UInt32(i),
                payload: (0..<Int(rng.next() % 3000)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        }
        let stream = frames.flatMap { $0.encode() }
        for _ in 0..<20 {
            var decoder = FrameDecoder(maxFrameSize: 1 << 20)
            var out: [Frame] = []
            var i = 0
            while i < stream.count {
                let n = min(stream.count - i, Int(rng.next() % 700) + 1)
                out += try feed(&decoder, Array(stream[i..<i + n]))
                i += n
            }
            #expect(out == frames)
        }
    }

    @Test func oversizedCorruptAndForeignFramesAreRejected() {
        let good = Frame(kind: 1, requestID: 9, payload: Array(repeating: 7, count: 100)).encode()
        var decoder = FrameDecoder(maxFrameSize: 64)
        #expect(throws: TandemError.self) { try feed(&decoder, good) }

        var badCRC = good
        badCRC[20] ^= 1
        var d2 = FrameDecoder(maxFrameSize: 1 << 20)
        #expect(throws: TandemError.self) { try feed(&d2, badCRC) }

        var badVersion = good
        badVersion[4] = 2
        var d3 = FrameDecoder(maxFrameSize: 1 << 20)
        #expect(throws: TandemError.self) { try feed(&d3, badVersion) }

        var d4 = FrameDecoder(maxFrameSize: 1 << 20)
        #expect(throws: TandemError.self) { try feed(&d4, [0, 0, 0, 3, 1, 1, 1]) }  // shorter than a header

        // A truncated frame is not an error: it waits for the rest.
        var d5 = FrameDecoder(maxFrameSize: 1 << 20)
        #expect((try? feed(&d5, Array(good.prefix(good.count - 1))))?.isEmpty == true)
        #expect((try? feed(&d5, [good.last!]))?.count == 1)
    }
}
