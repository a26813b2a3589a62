// Test hooks: behaviour that the tests of the `resnet` executable need and no user does, read
// from the environment once, in main, and handed down as options; the code they act in never
// reads the environment.
#pragma once

namespace rn::launch {

struct TestHooks {
  // RESNET_TEST_CHECKPOINT_PAUSE_MS: every checkpoint write holds its file half-written this
  // long, so that a test can stop or kill a rank inside it.
  int checkpoint_pause_ms = 0;
  // RESNET_TEST_CHECKPOINT_BROADCAST: ranks on one machine read checkpoints as ranks on several
  // machines do (each its share, broadcast to the others).
  bool checkpoint_broadcast = false;
};

}  // namespace rn::launch
