"""Getting events out of user code: the AST rewrite, the import hook, stdlib edges."""
