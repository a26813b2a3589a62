// Runs the built `resnet` binary in a shell and captures its exit code, stdout and stderr.
#pragma once

#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace rn::test {

struct CommandResult {
  int exit_code = -1;
  std::string out, err;
  // The non-empty lines of stderr.
  std::vector<std::string> err_lines() const {
    std::vector<std::string> lines;
    std::istringstream is(err);
    for (std::string l; std::getline(is, l);)
      if (!l.empty()) lines.push_back(l);
    return lines;
  }
  // How many lines of stderr contain `text` (a job's error line must appear once).
  int err_lines_with(const std::string& text) const {
    int n = 0;
    for (const auto& l : err_lines()) n += l.find(text) != std::string::npos;
    return n;
  }
};

// RN_RESNET_BINARY overrides the build tree's binary (the test programs packed for another
// machine, where the build tree does not exist).
inline std::string resnet_binary() {
  if (const char* p = std::getenv("RN_RESNET_BINARY"); p && *p) return p;
  return std::string(RN_BINARY_DIR) + "/resnet";
}

inline bool have_mpirun() {
  return std::system("command -v mpirun > /dev/null 2>&1") == 0;
}

// The prefix that runs `resnet` on `ranks` MPI ranks (as root too, with one thread each).
inline std::string mpirun_prefix(int ranks) {
  return "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 mpirun "
         "--oversubscribe -np " +
         std::to_string(ranks) + " ";
}

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The number after "key": in a flat JSON object (a `--json` line, a metrics.jsonl line), or NaN
// when absent.
inline double json_number(const std::string& json, const std::string& key) {
  const std::string k = "\"" + key + "\":";
  const size_t at = json.find(k);
  if (at == std::string::npos) return NAN;
  return std::strtod(json.c_str() + at + k.size(), nullptr);
}

// `args` is appended to the binary's path as shell text.
inline CommandResult run_resnet(const std::string& args, const std::string& prefix = "") {
  namespace fs = std::filesystem;
  static int counter = 0;
  const fs::path err_file = fs::temp_directory_path() / ("rn_cmd_" + std::to_string(::getpid()) +
                                                         "_" + std::to_string(counter++) + ".err");
  const std::string cmd = prefix + resnet_binary() + " " + args + " 2>" + err_file.string();
  CommandResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = read_text(err_file);
  fs::remove(err_file);
  return r;
}

}  // namespace rn::test
