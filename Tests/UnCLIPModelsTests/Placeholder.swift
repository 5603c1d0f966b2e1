import XCTest
final class UnCLIPModelsTestsPlaceholder: XCTestCase { func testNothing() {} }
