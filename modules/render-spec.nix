# Renders a node spec written in Nix as the JSON document xnoded reads.
#
# Builtins only, so that `nix-instantiate --eval` runs it without nixpkgs and the
# tests can hand its output to `xnodectl validate`; the module uses this very file.
#
# - An attribute set to null is left out, so an unset option means xnoded's default.
# - Each workload's `store_paths` gains the store paths that its `command` and
#   `reload` name, so a program written as "${pkgs.foo}/bin/foo" is realised before
#   it starts without being listed twice.
spec:
let
  inherit (builtins)
    attrNames
    concatMap
    elem
    filter
    foldl'
    head
    isAttrs
    isList
    isString
    mapAttrs
    removeAttrs
    split
    toJSON
    ;

  nullNames = set: filter (n: set.${n} == null) (attrNames set);
  withoutNulls =
    value:
    if isAttrs value then
      mapAttrs (_: withoutNulls) (removeAttrs value (nullNames value))
    else if isList value then
      map withoutNulls value
    else
      value;

  # A store path: nixbase32 hash (no e, o, u, t), a dash, then the name's characters.
  storePath = "(/nix/store/[0-9abcdfghijklmnpqrsvwxyz]{32}-[-+._?=0-9A-Za-z]+)";
  storePathsIn = s: if isString s then map head (filter isList (split storePath s)) else [ ];

  unique = foldl' (seen: x: if elem x seen then seen else seen ++ [ x ]) [ ];

  withStorePaths =
    workload:
    let
      argv = (workload.command or [ ]) ++ (workload.reload or [ ]);
      named = if isList argv then concatMap storePathsIn argv else [ ];
      listed = workload.store_paths or [ ];
    in
    if named == [ ] || !isList listed then
      workload
    else
      workload // { store_paths = unique (listed ++ named); };

  clean = withoutNulls spec;
in
toJSON (
  if isAttrs clean && isAttrs (clean.workloads or null) then
    clean
    // {
      workloads = mapAttrs (_: w: if isAttrs w then withStorePaths w else w) clean.workloads;
    }
  else
    clean
)
