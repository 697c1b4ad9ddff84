extension SharedMemoryGroup {
    /// The most ranks one group holds (the header's mailboxes grow as N²); `moe-run` checks
    /// `parallelism.workers` against it before a run starts.
    public static var maxWorldSize: Int { SharedMemoryLayout.maxWorldSize }
}
