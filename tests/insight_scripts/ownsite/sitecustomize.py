import builtins

builtins.USER_SITE_MARK = "the user's sitecustomize ran"
