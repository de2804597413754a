# The example node's spec, in Nix: programs are named by their packages, and the
# module adds their store paths to `store_paths`. node.name defaults to the host name.
{ pkgs }:
{
  node.labels.region = "eu-west";
  workloads = {
    web = {
      command = [
        "${pkgs.python3}/bin/python3"
        "-m"
        "http.server"
        "--bind"
        "127.0.0.1"
        "8080"
      ];
      working_directory = "/tmp";
      health.http.port = 8080;
      expose = [
        {
          service = "web";
          port = 8080;
        }
      ];
      resources.memory = "256M";
    };
    ticker = {
      command = [
        "${pkgs.bash}/bin/bash"
        "-c"
        "while true; do date; sleep 10; done"
      ];
      restart.policy = "always";
    };
  };
}
