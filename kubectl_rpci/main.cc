// kubectl-rpci: the kubectl plugin (`kubectl rpci ...` once on PATH).
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "kubectl_rpci/kubectl_rpci.h"

int main(int argc, char** argv) {
  rpci::kubectl::CliEnv env;
  if (const char* k = std::getenv("KUBECONFIG")) env.kubeconfig_env = k;
  if (const char* h = std::getenv("HOME")) env.home = h;
  std::vector<std::string> args(argv + 1, argv + argc);
  return rpci::kubectl::Run(args, std::cout, std::cerr, env);
}
