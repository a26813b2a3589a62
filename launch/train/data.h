// The data sets a config names, built as the loader's SampleSets: Fashion-MNIST, CIFAR and
// synthetic in memory; image folders (listed once on rank 0, broadcast, cached in the run
// directory) and packed files streamed and decoded per sample.
#pragma once

#include <memory>
#include <string>

#include "distributed/communicator.h"
#include "io/loader.h"
#include "io/sample_set.h"
#include "launch/train/config.h"
#include "launch/train/model_use.h"

namespace rn::launch {

struct DataSplits {
  std::unique_ptr<io::SampleSet> train, test;
  int height = 0, width = 0;  // of the network's training input
  // The classes' names (the folders', the packed file's, the published ones) and the
  // evaluation transform, for the checkpoints.
  ModelUse use;
};

struct DataOptions {
  int eval_views = 1;         // 10: the test split gives ten crops of each sample
  bool cache_listing = true;  // image_folder: keep the file list in run_dir/data/
  int list_threads = 4;       // image_folder: threads that list it (waiting on the disk mostly)
};

// Said where the data has fewer classes than model.num_classes (a warning of load_data, a line of
// the dry run): which, and the --set that fits the classifier to the data.
std::string class_count_note(const Config& cfg, int data_classes);
// Reads (or lists) both splits and checks them against the model. Collective over `comm`.
DataSplits load_data(const Config& cfg, distributed::Communicator& comm,
                     const DataOptions& options = {});

// Loader options of the config (batch size, workers, bad-sample policy, warnings to the log).
io::LoaderOptions loader_options(const Config& cfg, bool train);

}  // namespace rn::launch
