import XCTest
final class UnCLIPCLITestsPlaceholder: XCTestCase { func testNothing() {} }
