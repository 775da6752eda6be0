import Testing
import Transport

/// `/metrics` is read by Prometheus and by our own benchmarks: the text format 0.0.4, exactly.
@Suite struct MetricsTextTests {
    @Test func familiesSamplesAndHistogramsInTheTextFormat() {
        var out = MetricsText()
        out.add("a_total", .counter, "As counted.", 3)
        out.add("b", .gauge, "Per region.", samples: [([("region", "eu")], 1), ([("region", "us")], 0)])
        out.add("c", .gauge, "No samples yet.", samples: [])
        var h = Histogram(bounds: [1, 5])
        for v in [0.5, 2, 2, 9] { h.record(v) }
        out.add("d_ms", "Latency.", histograms: [([("p", "0")], h)])
        #expect(
            out.text == """
                # HELP a_total As counted.
                # TYPE a_total counter
                a_total 3
                # HELP b Per region.
                # TYPE b gauge
                b{region="eu"} 1
                b{region="us"} 0
                # HELP c No samples yet.
                # TYPE c gauge
                # HELP d_ms Latency.
                # TYPE d_ms histogram
                d_ms_bucket{p="0",le="1.0"} 1
                d_ms_bucket{p="0",le="5.0"} 3
                d_ms_bucket{p="0",le="+Inf"} 4
                d_ms_sum{p="0"} 13.5
                d_ms_count{p="0"} 4

                """)
        #expect(h.count == 4)
    }

    @Test func labelValuesAreEscaped() {
        var out = MetricsText()
        out.add("x", .gauge, "Escaped.", samples: [([("name", "a\"b\\c\nd")], 1)])
        #expect(out.text.hasSuffix("x{name=\"a\\\"b\\\\c\\nd\"} 1\n"))
    }
}
