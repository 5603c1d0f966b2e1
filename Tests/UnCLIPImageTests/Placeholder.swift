import XCTest
final class UnCLIPImageTestsPlaceholder: XCTestCase { func testNothing() {} }
