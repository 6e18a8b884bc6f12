import sys

print("argv", sys.argv[1:], "main", __name__ == "__main__")
print("torch imported:", "torch" in sys.modules)
print("to stderr", file=sys.stderr)
sys.exit(3)
