import XCTest
final class SchedulersPlaceholder: XCTestCase { func testNothing() {} }
