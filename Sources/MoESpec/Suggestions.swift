/// "Did you mean" suggestions by edit distance.
public enum Suggestions {
    /// Levenshtein distance over Unicode scalars, case-insensitive.
    public static func distance(_ a: String, _ b: String) -> Int {
        let x = Array(a.lowercased().unicodeScalars), y = Array(b.lowercased().unicodeScalars)
        if x.isEmpty { return y.count }
        if y.isEmpty { return x.count }
        var previous = Array(0...y.count)
        var current = [Int](repeating: 0, count: y.count + 1)
        for i in 1...x.count {
            current[0] = i
            for j in 1...y.count {
                let substitution = previous[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1)
                current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
            }
            swap(&previous, &current)
        }
        return previous[y.count]
    }

    /// The closest candidate when its distance is at most max(2, word length / 3) and smaller
    /// than the word's length (so `<<` suggests nothing rather than `k`); ties go to the earliest
    /// candidate (schema order).
    public static func closest(to word: String, in candidates: [String]) -> String? {
        let length = word.unicodeScalars.count
        let limit = min(max(2, length / 3), length - 1)
        var best: (candidate: String, distance: Int)?
        for candidate in candidates {
            let d = distance(word, candidate)
            if d <= limit, d < (best?.distance ?? Int.max) { best = (candidate, d) }
        }
        return best?.candidate
    }
}
