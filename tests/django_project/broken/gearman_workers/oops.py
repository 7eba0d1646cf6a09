import spoolgear_no_such_module  # noqa: F401 - the import error the tests expect to see
