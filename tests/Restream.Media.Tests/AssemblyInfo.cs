// MediaFrame.Outstanding counts pooled frames process-wide: the tests that check every frame came back
// (StreamHubTests, MutationFuzzTests) would see another class's frames in flight. The whole assembly runs in seconds.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
