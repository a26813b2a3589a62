// Ensembles end to end: members trained on rank groups of one job (each exactly as it trains
// alone), scored together with the same counts on any number of ranks, two identical members
// scoring as one, a killed rank ending the whole job, a stop signal and a kill resumed exactly.
#include <csignal>
#include <regex>

#include "checkpoint_fixture.h"

namespace rn::test {
namespace {

class EnsembleTest : public CheckpointTest {
 protected:
  // The fixture's synthetic run (256 images, 32 per rank, 3 epochs, one thread per rank) as an
  // ensemble: a and b are resnet20 with seeds 1 and 2, c resnet32 with overrides of its own.
  std::string ensemble_config(const std::string& run,
                              const std::string& c_overrides = "{optim: {lr: 0.02}}") {
    const fs::path p = dir_ / "ensemble.yaml";
    std::ofstream(p) << config_text(run)
                     << "ensemble:\n  members:\n"
                        "    - {name: a, model: resnet20, seed: 1}\n"
                        "    - {name: b, model: resnet20, seed: 2}\n"
                        "    - {name: c, model: resnet32, seed: 3, overrides: "
                     << c_overrides << "}\n";
    return "--config " + p.string() + " --set run_dir=" + (dir_ / run).string();
  }
  fs::path member_ckpt(const std::string& run, const std::string& member, int64_t step) const {
    return ckpt(run + "/" + member, step);
  }
  // The ensemble's (name "ensemble") or a member's correct counts per view count, from --json.
  static std::map<int, std::pair<int64_t, int64_t>> counts(const std::string& json,
                                                           const std::string& name) {
    std::map<int, std::pair<int64_t, int64_t>> out;
    const std::regex row("\\{\"name\": \"" + name +
                         "\"[^}]*?\"crops\": (\\d+), \"top1_correct\": (\\d+), \"top5_correct\": "
                         "(\\d+)");
    for (std::sregex_iterator it(json.begin(), json.end(), row), end; it != end; ++it)
      out[std::stoi((*it)[1])] = {std::stoll((*it)[2]), std::stoll((*it)[3])};
    return out;
  }
  // Whether `pid` runs (a zombie, exited but not yet reaped, does not).
  static bool alive(int pid) {
    const std::string status = read_text("/proc/" + std::to_string(pid) + "/status");
    return !status.empty() && status.find("State:\tZ") == std::string::npos;
  }
  static void expect_same_tensors(const fs::path& a, const fs::path& b) {
    const auto ta = tensors(a), tb = tensors(b);
    ASSERT_FALSE(ta.empty());
    ASSERT_EQ(ta.size(), tb.size()) << a << " vs " << b;
    for (const auto& [name, bytes] : ta)
      EXPECT_TRUE(bytes == tb.at(name)) << name << " differs: " << a << " vs " << b;
  }
};

TEST_F(EnsembleTest, EachMemberTrainsOnItsGroupAndTheEnsembleIsScoredWithExactCounts) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  const auto r = run_resnet("train " + ensemble_config("ens"), ranks(3));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("ensemble of 3 on 3 rank(s), 3 group(s): a (resnet20) on rank 0, "
                       "b (resnet20) on rank 1, c (resnet32) on rank 2"),
            std::string::npos)
      << r.err;
  EXPECT_TRUE(std::regex_search(r.err, std::regex(R"(ensemble: a [^|]*\| b [^|]*\| c )"))) << r.err;
  // The members' own lines go to their train.log, not to the console.
  EXPECT_EQ(r.err.find("multiply-adds per image"), std::string::npos) << r.err;
  for (const char* m : {"a", "b", "c"}) {
    SCOPED_TRACE(m);
    EXPECT_EQ(metrics(std::string("ens/") + m).size(), 3u);
    EXPECT_TRUE(fs::exists(member_ckpt("ens", m, 24)));  // 8 steps an epoch on one rank
    EXPECT_NE(read_text(dir_ / "ens" / m / "train.log").find("multiply-adds per image"),
              std::string::npos);
  }
  EXPECT_NE(read_text(dir_ / "ens" / "c" / "config.yaml").find("lr: 0.02"), std::string::npos);
  for (const char* row : {"a ", "b ", "c ", "ensemble "})
    EXPECT_NE(r.out.find(row), std::string::npos) << row << " not in the table:\n" << r.out;
  EXPECT_NE(r.out.find("top-5 (10 crops)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("final: ensemble of 3"), std::string::npos) << r.out;
  const std::string json = read_text(dir_ / "ens" / "ensemble.json");
  EXPECT_EQ(json_number(json, "samples"), 64) << json;  // every test sample once
  for (const char* name : {"a", "b", "c", "ensemble"}) {
    const auto c = counts(json, name);
    ASSERT_EQ(c.size(), 2u) << name << ": 1 and 10 crops in " << json;
    EXPECT_LE(c.at(1).first, c.at(1).second) << name;  // top-1 within top-5
  }
  // `resnet eval` of the ensemble config: the same counts on 1 and 3 ranks as at the end of
  // training.
  const auto e1 = run_resnet("eval " + ensemble_config("ens") + " --crops 1,10 --json");
  const auto e3 = run_resnet("eval " + ensemble_config("ens") + " --crops 1,10 --json", ranks(3));
  ASSERT_EQ(e1.exit_code, 0) << e1.err;
  ASSERT_EQ(e3.exit_code, 0) << e3.err;
  for (const char* name : {"a", "b", "c", "ensemble"}) {
    EXPECT_EQ(counts(e1.out, name), counts(json, name)) << name;
    EXPECT_EQ(counts(e3.out, name), counts(json, name)) << name;
  }
  // Its text table names every member and the ensemble.
  const auto t = run_resnet("eval " + ensemble_config("ens") + " --crops 1,10", ranks(2));
  ASSERT_EQ(t.exit_code, 0) << t.err;
  EXPECT_NE(t.out.find("ensemble "), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("eval: 3 model(s), 1 crop(s), 64 test samples"), std::string::npos) << t.out;
}

TEST_F(EnsembleTest, AMemberTrainsExactlyAsItDoesAlone) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  // Four ranks for three members: the extra rank goes to the costliest, c (resnet32).
  const auto r = run_resnet("train " + ensemble_config("ens"), ranks(4));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("c (resnet32) on ranks 2-3"), std::string::npos) << r.err;
  // Each member's own config.yaml trains it alone, on its group's number of ranks.
  const auto a = run_resnet("train --config " + (dir_ / "ens" / "a" / "config.yaml").string() +
                            " --set run_dir=" + (dir_ / "a_alone").string());
  ASSERT_EQ(a.exit_code, 0) << a.err;
  expect_same_tensors(member_ckpt("ens", "a", 24), ckpt("a_alone", 24));
  const auto c = run_resnet("train --config " + (dir_ / "ens" / "c" / "config.yaml").string() +
                                " --set run_dir=" + (dir_ / "c_alone").string(),
                            ranks(2));
  ASSERT_EQ(c.exit_code, 0) << c.err;
  expect_same_tensors(member_ckpt("ens", "c", 12), ckpt("c_alone", 12));  // 4 steps an epoch
  // And the comparison can fail: the members differ from one another.
  EXPECT_FALSE(tensors(member_ckpt("ens", "a", 24)) == tensors(member_ckpt("ens", "b", 24)));
}

TEST_F(EnsembleTest, MoreMembersThanRanksTakeTurnsAndTwoIdenticalMembersScoreAsOne) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  const auto r = run_resnet("train " + ensemble_config("ens") + " --set train.epochs=1", ranks(2));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("(more members than ranks: members take turns): a (resnet20) on rank 1, "
                       "b (resnet20) on rank 1, c (resnet32) on rank 0"),
            std::string::npos)
      << r.err;
  const fs::path a = member_ckpt("ens", "a", 8), b = member_ckpt("ens", "b", 8);
  const std::string data = " --config " + (dir_ / "ens" / "a" / "config.yaml").string();
  const auto one = run_resnet("eval --checkpoint " + a.string() + data + " --crops 1,10 --json");
  const auto two = run_resnet("eval --checkpoint " + a.string() + " --checkpoint " + a.string() +
                              data + " --crops 1,10 --json");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  ASSERT_EQ(two.exit_code, 0) << two.err;
  const auto single = counts(one.out, "ensemble");
  ASSERT_EQ(single.size(), 2u) << one.out;
  EXPECT_EQ(counts(two.out, "ensemble"), single);
  // Weights: b with a weight of 1e-9 leaves a's ranking unless probabilities tie to 1e-9.
  const auto weighted = run_resnet("eval --checkpoint " + a.string() + " --checkpoint " +
                                   b.string() + data + " --weights 1,1e-9 --json");
  ASSERT_EQ(weighted.exit_code, 0) << weighted.err;
  EXPECT_EQ(counts(weighted.out, "ensemble").at(1), single.at(1));
  const auto bad = run_resnet("eval --checkpoint " + a.string() + data + " --weights 1,2");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(error_line(bad.err).find("--weights gives 2 weight(s) for 1 model(s)"),
            std::string::npos)
      << bad.err;
}

TEST_F(EnsembleTest, AKilledRankEndsTheWholeJob) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  start("train " + ensemble_config("ens") + " --set train.epochs=1000", 3);
  ASSERT_TRUE(wait_for(member_ckpt("ens", "c", 8)));
  const int pids[3] = {pid_of(0), pid_of(1), pid_of(2)};
  const auto t0 = std::chrono::steady_clock::now();
  ::kill(pids[2], SIGKILL);
  EXPECT_NE(wait_exit(), 0);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(s, 60) << "the job took " << s << " s to end";
  RecordProperty("seconds_to_end", std::to_string(s));
  for (int pid : pids) EXPECT_FALSE(alive(pid)) << "rank process " << pid << " still running";
  // The job's first line says which member rank 2 trains; mpirun's names the dead rank.
  const std::string err = read_text(dir_ / "bg.err");
  EXPECT_NE(err.find("c (resnet32) on rank 2"), std::string::npos) << err;
  EXPECT_TRUE(std::regex_search(err, std::regex("rank 2 with PID \\d+ .*signal 9"))) << err;
}

TEST_F(EnsembleTest, AnErrorInOneMemberEndsTheJobNamingIt) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  // c diverges at once; a and b would train on.
  auto r = run_resnet(
      "train " + ensemble_config("ens", "{optim: {lr: 1.0e+30}}") + " --set train.epochs=1000",
      ranks(3));
  EXPECT_NE(r.exit_code, 0);
  int lines = 0;
  const std::string e = error_line(r.err, &lines);
  EXPECT_EQ(lines, 1) << r.err;
  EXPECT_NE(e.find("[rank 2] ensemble member 'c' (rank 2): training diverged at step"),
            std::string::npos)
      << r.err;
  // A bad member is refused before anything trains.
  const auto bad = run_resnet("train " + ensemble_config("bad") + " --set ensemble.split=macs " +
                                  "--set 'ensemble.members=[{name: x, model: resnet33}]'",
                              ranks(2));
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(error_line(bad.err).find("ensemble member 'x': 'model': unknown model 'resnet33'"),
            std::string::npos)
      << bad.err;
  EXPECT_FALSE(fs::exists(dir_ / "bad" / "x"));
  const auto file = run_resnet("train " + ensemble_config("ens2") + " --resume x.h5");
  EXPECT_EQ(file.exit_code, 1);
  EXPECT_NE(error_line(file.err).find("an ensemble resumes with --resume auto"), std::string::npos)
      << file.err;
  const auto untrained = run_resnet("eval " + ensemble_config("ens3"));
  EXPECT_EQ(untrained.exit_code, 1);
  EXPECT_NE(error_line(untrained.err).find("ensemble member 'a': no checkpoint in"),
            std::string::npos)
      << untrained.err;
}

TEST_F(EnsembleTest, AStopSignalToOneRankCheckpointsEveryMember) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  start("train " + ensemble_config("ens") + " --set train.epochs=1000", 3);
  for (const char* m : {"a", "b", "c"}) ASSERT_TRUE(wait_for(member_ckpt("ens", m, 8)));
  ::kill(pid_of(2), SIGUSR1);  // c's rank only
  ASSERT_EQ(wait_exit(), 0) << read_text(dir_ / "bg.err");
  EXPECT_NE(read_text(dir_ / "bg.out").find("stopped by signal after"), std::string::npos);
  EXPECT_NE(read_text(dir_ / "bg.out").find("a, b, c checkpointed"), std::string::npos)
      << read_text(dir_ / "bg.out");
  for (const char* m : {"a", "b", "c"})
    EXPECT_NE(read_text(dir_ / "ens" / m / "train.log").find("stop signal: checkpoint written"),
              std::string::npos)
        << m;
}

TEST_F(EnsembleTest, ResumeAfterAKillContinuesEveryMemberExactly) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed";
  const std::string steps = " --set train.epochs=2 --set checkpoint.every_steps=2";
  auto full = run_resnet("train " + ensemble_config("full") + steps, ranks(3));
  ASSERT_EQ(full.exit_code, 0) << full.err;
  // The same job, each checkpoint write held 1 s (a test hook), killed on b's rank once b has
  // written step 4.
  start("train " + ensemble_config("cut") + steps, 3, "RESNET_TEST_CHECKPOINT_PAUSE_MS=1000");
  ASSERT_TRUE(wait_for(member_ckpt("cut", "b", 4)));
  ::kill(pid_of(1), SIGKILL);
  EXPECT_NE(wait_exit(), 0);
  EXPECT_FALSE(fs::exists(member_ckpt("cut", "b", 16)));
  auto resumed = run_resnet("train " + ensemble_config("cut") + steps + " --resume auto", ranks(3));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  for (const char* m : {"a", "b", "c"}) {
    SCOPED_TRACE(m);
    EXPECT_NE(read_text(dir_ / "cut" / m / "train.log").find("resumed from"), std::string::npos);
    expect_same_tensors(member_ckpt("full", m, 16), member_ckpt("cut", m, 16));
    EXPECT_EQ(metrics(std::string("cut/") + m).at(2), metrics(std::string("full/") + m).at(2));
  }
  // The same members score the same.
  for (const char* name : {"a", "b", "c", "ensemble"})
    EXPECT_EQ(counts(read_text(dir_ / "cut" / "ensemble.json"), name),
              counts(read_text(dir_ / "full" / "ensemble.json"), name))
        << name;
  // A finished ensemble resumed again trains nothing and scores the same.
  auto again = run_resnet("train " + ensemble_config("full") + steps + " --resume auto", ranks(3));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.err.find("member a (rank 0): done (trained before)"), std::string::npos)
      << again.err;
  EXPECT_EQ(metrics("full/a").size(), 2u);
}

}  // namespace
}  // namespace rn::test
