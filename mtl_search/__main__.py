from mtl_search.cli import run

run()
