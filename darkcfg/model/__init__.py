"""The model stage: a Darknet cfg parsed (`cfg`, `netconfig`), built layer by layer (`layers/`, `network`),
its detection heads (`heads`), and its weights (`weights`, `checkpoint`, `convert`, `loading`, `download`)."""
