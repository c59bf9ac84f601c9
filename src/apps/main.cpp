// lmkit: the command-line entry point. Parses the verb and its flags, runs it, and turns any
// error into one line on stderr and exit code 1. Not where any verb's logic lives.
#include <cstdio>
#include <exception>

#include "apps/commands.h"
#include "core/error.h"

int main(int argc, char **argv) {
  using namespace lmkit::app;
  CLI::App app{
      "lmkit: train, run, serve and inspect transformer language models on the CPU.\n"
      "Run `lmkit <command> --help` for a command's flags."};
  app.name("lmkit");
  app.set_version_flag("--version", "lmkit 0.1.0");
  app.require_subcommand(1);
  Action run;
  add_demo(app, run);
  add_generate(app, run);
  add_chat(app, run);
  add_serve(app, run);
  add_tokenize(app, run);
  add_inspect(app, run);
  add_tokenizer(app, run);
  add_data(app, run);
  add_train(app, run);
  add_eval(app, run);
  add_quantize(app, run);
  add_bench(app, run);
  add_simulate(app, run);
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (const CLI::App *sub : app.get_subcommands({})) known |= sub->get_name() == argv[1];
    if (!known) {
      std::string names;
      for (const CLI::App *sub : app.get_subcommands({}))
        names += (names.empty() ? "" : ", ") + sub->get_name();
      std::fprintf(stderr, "lmkit: error: unknown command '%s' (commands: %s)\n", argv[1],
                   names.c_str());
      return 1;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp &e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp &e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion &e) {
    return app.exit(e);
  } catch (const CLI::ParseError &e) {
    std::fprintf(stderr, "lmkit: error: %s (see --help)\n", e.what());
    return 1;
  }
  try {
    return run ? run() : 0;
  } catch (const lmkit::Error &e) {
    std::fflush(stdout);
    std::fprintf(stderr, "lmkit: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc &) {
    std::fprintf(stderr, "lmkit: error: out of memory\n");
    return 1;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "lmkit: error: %s\n", e.what());
    return 1;
  }
}
