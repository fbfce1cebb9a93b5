import LiversegSupport

/// A `Buffer` of `count` elements, each `value`; throws `outOfMemory` rather than trapping.
func filledBuffer<Element>(_ value: Element, count: Int) throws -> Buffer<Element> {
    let buffer = try Buffer<Element>(count: count, zeroed: false)
    buffer.pointer.initialize(repeating: value, count: count)
    return buffer
}
