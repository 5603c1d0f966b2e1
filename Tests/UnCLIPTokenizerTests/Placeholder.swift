import XCTest
final class UnCLIPTokenizerTestsPlaceholder: XCTestCase { func testNothing() {} }
