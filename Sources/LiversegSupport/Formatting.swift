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
