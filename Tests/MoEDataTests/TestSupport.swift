import Foundation
import MoECore
import MoEData
import XCTest

/// A fresh temporary directory per test, removed afterwards.
class DataTestCase: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("moe-data-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func path(_ name: String) -> String {
        directory.appendingPathComponent(name).path
    }
}

/// The repository root (three levels above this file: Tests/MoEDataTests/TestSupport.swift).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

/// A small data set with known values: x[i, j] = i * 10 + j, y = i % classes, domain = i % 3.
func makeDataset(rows: Int, features: Int = 3, classes: Int = 4, withDomain: Bool = true) throws -> Dataset {
    let values = (0..<rows).flatMap { i in (0..<features).map { Float(i * 10 + $0) } }
    return try Dataset(x: Tensor(shape: [rows, features], values: values), y: (0..<rows).map { $0 % classes },
                       domain: withDomain ? (0..<rows).map { $0 % 3 } : nil, classes: classes)
}
