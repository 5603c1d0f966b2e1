import XCTest
final class UnCLIPRandomTestsPlaceholder: XCTestCase { func testNothing() {} }
