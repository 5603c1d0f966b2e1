import XCTest
final class UnCLIPWeightsTestsPlaceholder: XCTestCase { func testNothing() {} }
