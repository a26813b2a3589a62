// Command-line flags of a command: `--name value`, repeatable `--name value`, and `--flag`; an
// unknown or malformed flag is an error that lists the valid ones. Each command declares its
// flags once, with a line of help each (CommandSpec): the parser accepts exactly those and
// `--help` prints them, so the two cannot disagree.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace rn::launch {

struct Flag {
  enum class Takes { value, values, nothing };  // one value; a value, repeatable; none (a switch)
  std::string name;                             // without the dashes
  Takes takes = Takes::value;
  std::string arg;   // what the value looks like: FILE, N, cpu|cuda ("" for a switch)
  std::string help;  // one line
  bool required = false;
};

struct CommandSpec {
  std::string name;        // as typed after `resnet`: "train", "data pack"
  std::string positional;  // the argument before the flags ("FILE"), or "" for none
  std::string summary;     // what it does, one line
  std::vector<Flag> flags;
  std::string operands;  // what the arguments among the flags are ("PATH..."), or "" for none
};

// A command made of subcommands (`resnet ckpt`, `resnet data`).
struct CommandGroup {
  std::string name, summary;
  std::vector<const CommandSpec*> commands;
};

// `text` broken into lines of at most `width` columns, every line after the first indented by
// `indent` spaces (the first continues where the caller is).
std::string wrap_text(const std::string& text, size_t width, size_t indent, size_t first_column);

// A group's subcommands as its usage names them: "inspect|init|bench".
std::string subcommand_names(const CommandGroup& g);

// What `--help` prints: the usage line, the summary, one line a flag.
std::string help_text(const CommandSpec& c);
std::string help_text(const CommandGroup& g);
// The flags as the errors list them ("--config, --resume, --set, --verbose").
std::string flag_list(const CommandSpec& c);

// Thrown where a command line asks for help (--help or -h): main prints `text` once and the
// command ends with exit code 0.
struct HelpRequested {
  std::string text;
};

// Whether `argv` asks for help.
bool asks_for_help(const std::vector<std::string>& argv);

class Args {
 public:
  // `argv` starts after the command's name and its positional argument, if any. Throws
  // HelpRequested where it asks for help.
  Args(const std::vector<std::string>& argv, const CommandSpec& spec);
  bool has(const std::string& name) const;
  std::string get(const std::string& name, const std::string& fallback = "") const;
  std::string required(const std::string& name) const;
  int get_int(const std::string& name, int fallback) const;
  std::vector<std::string> all(const std::string& name) const;
  bool flag(const std::string& name) const { return has(name); }
  // The arguments that are not flags, in order (commands with CommandSpec::operands).
  const std::vector<std::string>& operands() const { return operands_; }

 private:
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> operands_;
};

// The positional argument of `spec` (argv[0]); help where argv asks for it, else an error that
// gives the usage where it is missing.
std::string positional(const std::vector<std::string>& argv, const CommandSpec& spec);

// The subcommand `argv[0]` of `group`: help where argv asks for none in particular, an error that
// lists them where it names none or an unknown one.
const CommandSpec& subcommand(const std::vector<std::string>& argv, const CommandGroup& group);

// "3x224x224" -> {3, 224, 224}; `what` names the flag in errors.
std::vector<int64_t> parse_dims(const std::string& text, size_t count, const std::string& what);

}  // namespace rn::launch
