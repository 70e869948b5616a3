"""Check that values.schema.json covers every value of values.yaml and that
every value, or a section containing it, has a comment on the line above.

Usage: python check_values.py VALUES_YAML SCHEMA_JSON
Prints one line per problem and exits 1 when there is any.
"""

import json
import sys

import yaml


def schema_problems(node, schema, path):
    """Yield the paths of values that the schema does not describe."""
    properties = schema.get("properties")
    if not isinstance(node, yaml.MappingNode) or properties is None:
        return
    for key_node, value_node in node.value:
        key = key_node.value
        child_path = f"{path}.{key}" if path else key
        if key not in properties:
            yield f"{child_path} is not in values.schema.json"
            continue
        yield from schema_problems(value_node, properties[key], child_path)


def comment_problems(node, lines, path, documented):
    """Yield the paths of values with no comment above them or above a section containing them."""
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        child_path = f"{path}.{key_node.value}" if path else key_node.value
        line = key_node.start_mark.line
        has_comment = line > 0 and lines[line - 1].lstrip().startswith("#")
        # A section such as `operator:` needs no comment of its own when each
        # of its values has one.
        is_section = isinstance(value_node, yaml.MappingNode) and value_node.value
        if not (has_comment or documented or is_section):
            yield f"{child_path} (line {line + 1}) has no comment"
        yield from comment_problems(value_node, lines, child_path, documented or has_comment)


def main() -> int:
    values_path, schema_path = sys.argv[1], sys.argv[2]
    with open(values_path, encoding="utf-8") as file:
        text = file.read()
    with open(schema_path, encoding="utf-8") as file:
        schema = json.load(file)

    root = yaml.compose(text)
    problems = list(schema_problems(root, schema, ""))
    problems += comment_problems(root, text.splitlines(), "", False)

    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
