#if canImport(Glibc)
import Glibc
#endif

/// `value` written by C's printf with `conversion`, a single double conversion such as
/// "%.4f" or "%g" (so logs and tables keep their text without linking Foundation for
/// `String(format:)`). vsnprintf never writes past the buffer: a longer result is cut.
public func formatted(_ value: Double, _ conversion: StaticString) -> String {
    // Enough for "%f" of the largest finite double (309 digits) with its default 6 decimals.
    var buffer = [CChar](repeating: 0, count: 400)
    _ = withVaList([value]) { arguments in
        conversion.withUTF8Buffer { format in
            format.withMemoryRebound(to: CChar.self) { vsnprintf(&buffer, buffer.count, $0.baseAddress!, arguments) }
        }
    }
    return String(cString: buffer)
}

extension String {
    /// The string right-aligned in `width` columns (never cut).
    public func leftPadded(to width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }

    /// The string left-aligned in `width` columns (never cut).
    public func rightPadded(to width: Int) -> String { self + String(repeating: " ", count: max(0, width - count)) }
}

extension StringProtocol {
    /// The text without white space (newlines included) and the characters of `extra` at
    /// either end.
    public func trimmingWhitespace(and extra: Set<Character> = []) -> String {
        func padding(_ c: Character) -> Bool { c.isWhitespace || extra.contains(c) }
        guard let first = firstIndex(where: { !padding($0) }), let last = lastIndex(where: { !padding($0) }) else { return "" }
        return String(self[first...last])
    }
}
