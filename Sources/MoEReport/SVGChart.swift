import Foundation

/// One line of a `LineChart`: (x, y) points joined in order, with a legend label.
public struct ChartSeries {
    public var label: String
    public var points: [(x: Double, y: Double)]
    public var dashed = false
    /// The palette colour to use (default: the series' position); series of one setting share it.
    public var colorIndex: Int?
    /// An SVG dash pattern (`"6 4"`), overriding `dashed`; replicates of a setting differ by it.
    public var dashPattern: String?
    /// Individual values behind the points (e.g. one per seed when points are means), drawn as dots.
    public var replicates: [(x: Double, y: Double)]
    /// Vertical error bars (e.g. a 95 % confidence interval of a mean over seeds), with caps.
    public var errorBars: [(x: Double, low: Double, high: Double)] = []
    public init(label: String, points: [(x: Double, y: Double)], dashed: Bool = false, replicates: [(x: Double, y: Double)] = []) {
        self.label = label
        self.points = points.filter { $0.x.isFinite && $0.y.isFinite }
        self.dashed = dashed
        self.replicates = replicates.filter { $0.x.isFinite && $0.y.isFinite }
    }
}

/// A standalone SVG line chart: title, x and y axes with "nice" ticks and labels, a grid, one
/// `<polyline class="series" data-series="LABEL">` per series (with `<circle>` markers when a
/// series has at most 40 points and there are at most 8 series), replicate values as hollow
/// dots, error bars as `<line class="error-bar">` with caps (the y axis covers them), and a
/// legend to the right. With `categories`, x values are the indices 0..<n of those
/// names (a categorical axis).
public struct LineChart {
    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [ChartSeries]
    public var categories: [String]?
    /// Ticks at exactly these x values (a swept key's values) instead of round numbers.
    public var xTickValues: [Double]?
    /// What the curves were measured on, one line each under the title (`<text class="note">`).
    public var note: [String] = []
    /// Vertical dotted lines with a label at the top (where a run's later stages start).
    public var markers: [(x: Double, label: String)] = []
    public init(title: String, xLabel: String, yLabel: String, series: [ChartSeries], categories: [String]? = nil,
                xTickValues: [Double]? = nil, note: [String] = []) {
        self.note = note
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.series = series
        self.categories = categories
        self.xTickValues = xTickValues
    }

    static let width = 800.0, height = 440.0
    static let left = 78.0, right = 250.0, top = 44.0, bottom = 58.0

    public func svg() -> String {
        let w = Self.width, h = Self.height + SVG.noteHeight(note)
        let top = Self.top + SVG.noteHeight(note)
        let plotW = w - Self.left - Self.right, plotH = h - top - Self.bottom
        let xs = series.flatMap { $0.points.map(\.x) } + markers.map(\.x)
        let ys = series.flatMap { s in s.points.map(\.y) + s.replicates.map(\.y) + s.errorBars.flatMap { [$0.low, $0.high] }.filter(\.isFinite) }
        var xRange = Axis.range(xs), yRange = Axis.range(ys)
        if let categories {
            xRange = (-0.5, Double(max(categories.count, 1)) - 0.5)
        }
        var xTicks = categories == nil ? Axis.ticks(xRange) : Array(0..<(categories?.count ?? 0)).map(Double.init)
        if categories == nil, let values = xTickValues, !values.isEmpty {
            xTicks = values
            let pad = (xRange.1 - xRange.0) * 0.05
            xRange = (xRange.0 - pad, xRange.1 + pad)
        }
        let yTicks = Axis.ticks(yRange)
        if categories == nil, xTickValues == nil, let first = xTicks.first, let last = xTicks.last { xRange = (min(xRange.0, first), max(xRange.1, last)) }
        if let first = yTicks.first, let last = yTicks.last { yRange = (min(yRange.0, first), max(yRange.1, last)) }
        func px(_ x: Double) -> Double { Self.left + (x - xRange.0) / max(xRange.1 - xRange.0, 1e-300) * plotW }
        func py(_ y: Double) -> Double { top + plotH - (y - yRange.0) / max(yRange.1 - yRange.0, 1e-300) * plotH }

        var out = SVG.header(width: w, height: h, title: title) + SVG.note(note, width: w)
        out += "<rect x=\"\(f(Self.left))\" y=\"\(f(top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"#fbfbfb\" stroke=\"#888\"/>\n"
        // Grid and ticks.
        for t in yTicks {
            let y = py(t)
            out += "<line x1=\"\(f(Self.left))\" y1=\"\(f(y))\" x2=\"\(f(Self.left + plotW))\" y2=\"\(f(y))\" stroke=\"#e3e3e3\"/>\n"
            out += "<text class=\"tick\" x=\"\(f(Self.left - 6))\" y=\"\(f(y + 4))\" text-anchor=\"end\">\(SVG.escape(Axis.label(t, ticks: yTicks)))</text>\n"
        }
        for (i, t) in xTicks.enumerated() {
            let x = px(t)
            out += "<line x1=\"\(f(x))\" y1=\"\(f(top))\" x2=\"\(f(x))\" y2=\"\(f(top + plotH))\" stroke=\"#e3e3e3\"/>\n"
            let text = categories.map { $0[i] } ?? (xTickValues != nil ? Axis.label(t, ticks: []) : Axis.label(t, ticks: xTicks))
            out += "<text class=\"tick\" x=\"\(f(x))\" y=\"\(f(top + plotH + 18))\" text-anchor=\"middle\">\(SVG.escape(text))</text>\n"
        }
        out += "<text class=\"axis-label\" x=\"\(f(Self.left + plotW / 2))\" y=\"\(f(h - 14))\" text-anchor=\"middle\">\(SVG.escape(xLabel))</text>\n"
        out += "<text class=\"axis-label\" transform=\"translate(18,\(f(top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\">\(SVG.escape(yLabel))</text>\n"
        // Series.
        for (i, s) in series.enumerated() {
            let color = SVG.color(s.colorIndex ?? i)
            let dash = s.dashPattern.map { " stroke-dasharray=\"\($0)\"" } ?? (s.dashed ? " stroke-dasharray=\"6 4\"" : "")
            let points = s.points.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " ")
            out += "<polyline class=\"series\" data-series=\"\(SVG.escape(s.label))\" points=\"\(points)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(dash)><title>\(SVG.escape(s.label))</title></polyline>\n"
            for b in s.errorBars where b.x.isFinite && b.low.isFinite && b.high.isFinite {
                let x = px(b.x), lo = py(b.low), hi = py(b.high)
                out += "<line class=\"error-bar\" x1=\"\(f(x))\" y1=\"\(f(lo))\" x2=\"\(f(x))\" y2=\"\(f(hi))\" stroke=\"\(color)\" stroke-width=\"1.5\"/>\n"
                for y in [lo, hi] {
                    out += "<line class=\"error-cap\" x1=\"\(f(x - 5))\" y1=\"\(f(y))\" x2=\"\(f(x + 5))\" y2=\"\(f(y))\" stroke=\"\(color)\" stroke-width=\"1.5\"/>\n"
                }
            }
            for p in s.replicates {
                out += "<circle class=\"replicate\" cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"2.5\" fill=\"none\" stroke=\"\(color)\" opacity=\"0.7\"/>\n"
            }
            // A lone point draws no line: it always gets its marker.
            if s.points.count == 1 || (s.points.count <= 40 && series.count <= 8) {
                for p in s.points {
                    out += "<circle cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"3\" fill=\"\(color)\"/>\n"
                }
            }
        }
        for m in markers where m.x.isFinite {
            let x = px(m.x)
            out += "<line class=\"stage\" x1=\"\(f(x))\" y1=\"\(f(top))\" x2=\"\(f(x))\" y2=\"\(f(top + plotH))\" stroke=\"#555\" stroke-dasharray=\"2 3\"/>\n"
            out += "<text class=\"tick\" x=\"\(f(x + 3))\" y=\"\(f(top + 12))\">\(SVG.escape(SVG.truncate(m.label, 24)))</text>\n"
        }
        // Legend.
        let lx = Self.left + plotW + 14
        for (i, s) in series.enumerated() {
            let y = top + 10 + Double(i) * 18
            guard y < h - 10 else {
                out += "<text class=\"legend\" x=\"\(f(lx))\" y=\"\(f(y))\">… \(series.count - i) more</text>\n"
                break
            }
            let dash = s.dashPattern.map { " stroke-dasharray=\"\($0)\"" } ?? (s.dashed ? " stroke-dasharray=\"6 4\"" : "")
            out += "<line x1=\"\(f(lx))\" y1=\"\(f(y - 4))\" x2=\"\(f(lx + 22))\" y2=\"\(f(y - 4))\" stroke=\"\(SVG.color(s.colorIndex ?? i))\" stroke-width=\"3\"\(dash)/>\n"
            out += "<text class=\"legend\" x=\"\(f(lx + 28))\" y=\"\(f(y))\">\(SVG.escape(SVG.truncate(SVG.shortLabel(s.label), 32)))</text>\n"
        }
        return out + "</svg>\n"
    }
}

/// A standalone SVG heat map of `values[row][column]` (rows = experts, columns = log steps):
/// one `<rect class="cell">` per value coloured on a white → blue → dark scale from 0 to the
/// largest value, y axis = row names, x axis = `columnValues` with ticks, and a colour bar.
public struct HeatMap {
    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var rowNames: [String]
    public var columnValues: [Double]
    public var values: [[Double]]
    public var scaleLabel: String
    /// What the values were measured on, one line each under the title.
    public var note: [String] = []
    public init(title: String, xLabel: String, yLabel: String, rowNames: [String], columnValues: [Double],
                values: [[Double]], scaleLabel: String, note: [String] = []) {
        self.note = note
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.rowNames = rowNames
        self.columnValues = columnValues
        self.values = values
        self.scaleLabel = scaleLabel
    }

    public func svg() -> String {
        let w = LineChart.width, h = LineChart.height + SVG.noteHeight(note)
        let left = LineChart.left, top = LineChart.top + SVG.noteHeight(note), plotW = w - left - 120, plotH = h - top - LineChart.bottom
        let rows = values.count, cols = values.first?.count ?? 0
        let maxValue = max(values.flatMap { $0 }.filter(\.isFinite).max() ?? 1, 1e-12)
        let cw = plotW / Double(max(cols, 1)), ch = plotH / Double(max(rows, 1))
        var out = SVG.header(width: w, height: h, title: title) + SVG.note(note, width: w)
        for r in 0..<rows {
            for c in 0..<cols {
                let v = values[r][c]
                out += "<rect class=\"cell\" x=\"\(f(left + Double(c) * cw))\" y=\"\(f(top + Double(r) * ch))\" width=\"\(f(cw + 0.3))\" height=\"\(f(ch + 0.3))\" fill=\"\(SVG.heat(v / maxValue))\"/>\n"
            }
        }
        out += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"#888\"/>\n"
        let every = max(1, rows / 16)
        for r in stride(from: 0, to: rows, by: every) {
            out += "<text class=\"tick\" x=\"\(f(left - 6))\" y=\"\(f(top + (Double(r) + 0.5) * ch + 4))\" text-anchor=\"end\">\(SVG.escape(rowNames[r]))</text>\n"
        }
        if cols > 0 {
            let steps = max(1, cols / 8)
            for c in stride(from: 0, to: cols, by: steps) {
                let x = left + (Double(c) + 0.5) * cw
                out += "<text class=\"tick\" x=\"\(f(x))\" y=\"\(f(top + plotH + 18))\" text-anchor=\"middle\">\(SVG.escape(Axis.label(columnValues[c], ticks: [])))</text>\n"
            }
        }
        out += "<text class=\"axis-label\" x=\"\(f(left + plotW / 2))\" y=\"\(f(h - 14))\" text-anchor=\"middle\">\(SVG.escape(xLabel))</text>\n"
        out += "<text class=\"axis-label\" transform=\"translate(18,\(f(top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\">\(SVG.escape(yLabel))</text>\n"
        // Colour bar.
        let bx = left + plotW + 30, bw = 18.0
        for i in 0..<50 {
            let t = 1 - Double(i) / 49
            out += "<rect x=\"\(f(bx))\" y=\"\(f(top + Double(i) * plotH / 50))\" width=\"\(f(bw))\" height=\"\(f(plotH / 50 + 0.3))\" fill=\"\(SVG.heat(t))\"/>\n"
        }
        out += "<rect x=\"\(f(bx))\" y=\"\(f(top))\" width=\"\(f(bw))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"#888\"/>\n"
        for t in Axis.ticks((0, maxValue)) where t <= maxValue {
            let y = top + plotH - t / maxValue * plotH
            out += "<text class=\"tick\" x=\"\(f(bx + bw + 4))\" y=\"\(f(y + 4))\">\(SVG.escape(Axis.label(t, ticks: [0, maxValue / 5])))</text>\n"
        }
        out += "<text class=\"legend\" x=\"\(f(bx + bw / 2))\" y=\"\(f(top - 8))\" text-anchor=\"middle\">\(SVG.escape(scaleLabel))</text>\n"
        return out + "</svg>\n"
    }
}

/// Coordinates with two decimals.
func f(_ x: Double) -> String { String(format: "%.2f", x) }

enum SVG {
    static func header(width: Double, height: Double, title: String) -> String {
        """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">
        <style>.title{font-size:16px;font-weight:bold}.note{font-size:11px;fill:#444}.axis-label{font-size:13px}.tick{font-size:11px;fill:#333}.legend{font-size:12px}</style>
        <rect width="100%" height="100%" fill="white"/>
        <text class="title" x="\(f(width / 2))" y="26" text-anchor="middle">\(escape(title))</text>

        """
    }

    /// The extra height of `note` lines under the title (15 px each).
    static func noteHeight(_ note: [String]) -> Double { Double(note.count) * 15 }

    /// The note lines, centred under the title.
    static func note(_ lines: [String], width: Double) -> String {
        lines.enumerated().map { i, line in
            "<text class=\"note\" x=\"\(f(width / 2))\" y=\"\(f(44 + Double(i) * 15))\" text-anchor=\"middle\">\(escape(line))</text>\n"
        }.joined()
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }

    /// A legend label with each `a.b.key=value` shortened to `key=value`.
    static func shortLabel(_ label: String) -> String {
        label.split(separator: " ", omittingEmptySubsequences: false).map { token -> String in
            guard let eq = token.firstIndex(of: "="), let dot = token[..<eq].lastIndex(of: ".") else { return String(token) }
            return String(token[token.index(after: dot)...])
        }.joined(separator: " ")
    }

    static func truncate(_ s: String, _ n: Int) -> String { s.count <= n ? s : String(s.prefix(n - 1)) + "…" }

    /// Tableau's ten colours, then repeated.
    static let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
    static func color(_ i: Int) -> String { palette[i % palette.count] }

    /// White (0) → light blue → blue → dark navy (1).
    static func heat(_ t: Double) -> String {
        let stops: [(Double, Double, Double)] = [(255, 255, 255), (198, 219, 239), (66, 146, 198), (8, 69, 148), (8, 29, 68)]
        let x = min(max(t.isFinite ? t : 0, 0), 1) * Double(stops.count - 1)
        let i = min(Int(x), stops.count - 2), u = x - Double(i)
        let a = stops[i], b = stops[i + 1]
        func mix(_ p: Double, _ q: Double) -> Int { Int((p + (q - p) * u).rounded()) }
        return String(format: "#%02x%02x%02x", mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
    }
}

enum Axis {
    /// The data's range, widened when it is a single value; (0, 1) without data.
    static func range(_ values: [Double]) -> (Double, Double) {
        let finite = values.filter(\.isFinite)
        guard let lo = finite.min(), let hi = finite.max() else { return (0, 1) }
        if hi - lo < 1e-12 * max(abs(hi), 1) {
            let pad = max(abs(hi) * 0.05, 1e-3)
            return (lo - pad, hi + pad)
        }
        return (lo, hi)
    }

    /// About five ticks at 1, 2 or 5 × 10ⁿ covering `range`.
    static func ticks(_ range: (Double, Double)) -> [Double] {
        let span = range.1 - range.0
        guard span > 0, span.isFinite else { return [range.0] }
        let raw = span / 5
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
        var t = floor(range.0 / step) * step
        var out: [Double] = []
        while t <= range.1 + step * 0.5 && out.count < 20 {
            out.append(abs(t) < step * 1e-9 ? 0 : t)
            t += step
        }
        return out
    }

    /// A tick's text: as many decimals as the tick spacing needs; without `ticks` (a single value
    /// such as a swept value) the shortest form.
    static func label(_ v: Double, ticks: [Double]) -> String {
        if ticks.isEmpty { return v == v.rounded() && abs(v) < 1e7 ? String(Int(v)) : String(format: "%g", v) }
        let step = ticks.count > 1 ? abs(ticks[1] - ticks[0]) : abs(v)
        if v == v.rounded(), abs(v) < 1e7, step >= 1 || step == 0 { return String(Int(v)) }
        let decimals = step > 0 ? max(0, min(6, Int(-floor(log10(step))) + 1)) : 3
        return String(format: "%.\(decimals)f", v)
    }
}
