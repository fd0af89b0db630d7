from mtl_search.cli import console_script

console_script()
