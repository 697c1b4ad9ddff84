import MoECore

// Select OpenBLAS's kernel before anything else runs (re-execs once if needed; see README).
BLASEnvironment.prepareProcess()
MoeRun.main()
