#!/usr/bin/env python3
"""Build the offline stand-in evaluation sets under evals/data/.

Standard library only. All items below were written by the project team for
this repository; none is copied from MMLU, GSM8K or any other source.

Outputs (same columns as the hub datasets they stand in for):

  mmlu_local/test.jsonl    {"question", "subject", "choices", "answer"}   (cais/mmlu)
  mmlu_local/dev.jsonl     5 few-shot items per subject                 (cais/mmlu "dev")
  gsm8k_local/test.jsonl   {"question", "answer"}                         (openai/gsm8k "main")
  gsm8k_local/train.jsonl  few-shot pool                                  (openai/gsm8k "train")

Run:  python evals/data/build_local.py          (writes the files)
      python evals/data/build_local.py --check  (verifies only, writes nothing)

Every GSM8K solution is checked twice before anything is written: each
calculator annotation <<expr=value>> is evaluated, and an independent
expression encoding the problem's computation must equal the gold "#### N".
"""

import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------------------
# MMLU-style items: (question, correct_choice, [three wrong choices])
# The correct choice is placed at a rotating position so that answers are
# spread evenly over 0..3 (see place()).
# ---------------------------------------------------------------------------

MMLU = {
    "high_school_mathematics": {
        "test": [
            ("If 3x - 7 = 2x + 5, what is the value of x?",
             "12", ["-2", "2", "-12"]),
            ("What is the sum of the roots of the equation x^2 - 9x + 14 = 0?",
             "9", ["14", "-9", "7"]),
            ("What is the slope of the line passing through the points (2, 5) and (6, 17)?",
             "3", ["1/3", "4", "12"]),
            ("If f(x) = 2x^2 - 3x + 1, what is f(3)?",
             "10", ["8", "12", "28"]),
            ("How many distinct arrangements can be made of all the letters of the word LEVEL?",
             "30", ["120", "60", "20"]),
            ("What is the value of log base 2 of 64?",
             "6", ["5", "8", "32"]),
            ("A fair six-sided die is rolled twice. What is the probability that the sum of the two rolls is 8?",
             "5/36", ["1/6", "1/9", "7/36"]),
            ("What is the 10th term of the arithmetic sequence 4, 11, 18, 25, ...?",
             "67", ["70", "74", "60"]),
            ("What is the distance between the points (-1, 2) and (5, 10) in the coordinate plane?",
             "10", ["8", "12", "14"]),
            ("For what value of k does the system of equations 2x + 3y = 6 and 4x + ky = 5 have no solution?",
             "6", ["3", "-6", "12"]),
            ("Each interior angle of a regular polygon measures 140 degrees. How many sides does the polygon have?",
             "9", ["7", "8", "10"]),
            ("What is the remainder when x^3 - 2x^2 + 4x - 5 is divided by x - 2?",
             "3", ["-5", "0", "11"]),
        ],
        "dev": [
            ("Solve for x: 5(x - 2) = 3x + 4.",
             "7", ["3", "6", "-7"]),
            ("What is the vertex of the parabola y = (x - 3)^2 + 4?",
             "(3, 4)", ["(-3, 4)", "(3, -4)", "(4, 3)"]),
            ("If sin(t) = 3/5 and t is an acute angle, what is cos(t)?",
             "4/5", ["3/4", "5/4", "2/5"]),
            ("What is the product of the solutions of 2x^2 + 5x - 12 = 0?",
             "-6", ["6", "-5/2", "12"]),
            ("How many positive integer divisors does 36 have?",
             "9", ["8", "6", "12"]),
        ],
    },
    "elementary_mathematics": {
        "test": [
            ("What is the value of 7 x 8 + 6?",
             "62", ["98", "56", "64"]),
            ("Which fraction is equal to 0.75?",
             "3/4", ["7/5", "2/3", "5/7"]),
            ("A rectangle is 9 cm long and 4 cm wide. What is its perimeter?",
             "26 cm", ["36 cm", "13 cm", "22 cm"]),
            ("What is the value of the digit 6 in the number 3,642?",
             "600", ["6", "60", "6,000"]),
            ("Maria has 3 bags with 14 marbles in each bag. She gives away 9 marbles. How many marbles does she have left?",
             "33", ["31", "42", "51"]),
            ("Which of the following numbers is a prime number?",
             "29", ["21", "27", "33"]),
            ("What is 2/3 + 1/6?",
             "5/6", ["3/9", "1/2", "3/6"]),
            ("What is 4,768 rounded to the nearest hundred?",
             "4,800", ["4,700", "4,770", "5,000"]),
            ("What is the least common multiple of 6 and 8?",
             "24", ["48", "12", "2"]),
            ("A train leaves at 2:45 p.m. and arrives 1 hour 35 minutes later. At what time does it arrive?",
             "4:20 p.m.", ["4:10 p.m.", "3:20 p.m.", "4:30 p.m."]),
            ("How many minutes are there in 3 and a half hours?",
             "210", ["350", "180", "240"]),
            ("What is 15% of 80?",
             "12", ["8", "15", "18"]),
        ],
        "dev": [
            ("What is 144 divided by 12?",
             "12", ["11", "13", "14"]),
            ("Which of these numbers is the greatest?",
             "0.6", ["0.45", "0.509", "0.099"]),
            ("A square has sides that are 7 inches long. What is its area?",
             "49 square inches", ["28 square inches", "14 square inches", "56 square inches"]),
            ("What is the next number in the pattern 3, 7, 11, 15, ...?",
             "19", ["18", "20", "21"]),
            ("Sam read 27 pages on Monday and 38 pages on Tuesday. How many pages did he read in all?",
             "65", ["55", "61", "75"]),
        ],
    },
    "high_school_biology": {
        "test": [
            ("Which organelle is the main site of ATP production by aerobic respiration in eukaryotic cells?",
             "Mitochondrion", ["Ribosome", "Golgi apparatus", "Lysosome"]),
            ("Two pea plants that are both heterozygous (Aa) for a gene showing complete dominance are crossed. What fraction of the offspring is expected to show the recessive phenotype?",
             "1/4", ["1/2", "3/4", "0"]),
            ("In a DNA double helix, which base pairs with adenine?",
             "Thymine", ["Uracil", "Cytosine", "Guanine"]),
            ("During which phase of mitosis do sister chromatids separate and move toward opposite poles of the cell?",
             "Anaphase", ["Prophase", "Metaphase", "Telophase"]),
            ("What is the final electron acceptor of the electron transport chain in aerobic respiration?",
             "Oxygen", ["Carbon dioxide", "NAD+", "Glucose"]),
            ("In which part of the chloroplast does the Calvin cycle take place?",
             "Stroma", ["Thylakoid membrane", "Outer membrane", "Thylakoid lumen"]),
            ("Most enzymes are made of which type of biological molecule?",
             "Proteins", ["Lipids", "Carbohydrates", "Nucleic acids"]),
            ("Under the biological species concept, a species is a group of organisms that",
             "can interbreed in nature and produce fertile offspring",
             ["live in the same habitat", "have identical DNA sequences", "eat the same kinds of food"]),
            ("Which process produces four genetically different haploid cells from one diploid cell?",
             "Meiosis", ["Mitosis", "Binary fission", "Budding"]),
            ("In a food chain, organisms that make their own food using energy from sunlight are called",
             "producers", ["primary consumers", "decomposers", "secondary consumers"]),
            ("Which blood vessels carry blood away from the heart?",
             "Arteries", ["Veins", "Capillaries", "Venules"]),
            ("What is the main role of messenger RNA (mRNA) in a cell?",
             "It carries genetic instructions from DNA to the ribosome for protein synthesis",
             ["It forms the main structural part of the ribosome",
              "It brings amino acids to the ribosome",
              "It stores the hereditary information passed on to offspring"]),
        ],
        "dev": [
            ("Which structure is found in plant cells but not in animal cells?",
             "Cell wall", ["Cell membrane", "Ribosome", "Mitochondrion"]),
            ("What are the monomers that make up proteins?",
             "Amino acids", ["Nucleotides", "Fatty acids", "Monosaccharides"]),
            ("The movement of water across a selectively permeable membrane from a region of higher water concentration to a region of lower water concentration is called",
             "osmosis", ["active transport", "endocytosis", "translation"]),
            ("Which organ in the human body produces insulin?",
             "Pancreas", ["Liver", "Kidney", "Stomach"]),
            ("A point mutation that changes a codon for an amino acid into a stop codon is called a",
             "nonsense mutation", ["silent mutation", "missense mutation", "frameshift mutation"]),
        ],
    },
    "high_school_computer_science": {
        "test": [
            ("What is the decimal value of the binary number 101101?",
             "45", ["43", "46", "55"]),
            ("What is the worst-case time complexity of binary search on a sorted array of n elements?",
             "O(log n)", ["O(n)", "O(n log n)", "O(1)"]),
            ("What does the following Python code print?\n\nx = 5\ny = x\nx = x + 3\nprint(y)",
             "5", ["8", "3", "Nothing; an error occurs"]),
            ("Which data structure removes items in last-in, first-out (LIFO) order?",
             "Stack", ["Queue", "Hash table", "Linked list sorted in ascending order"]),
            ("How many different values can be represented using 6 bits?",
             "64", ["6", "32", "36"]),
            ("In Python, what is the value of the expression 17 % 5?",
             "2", ["3", "3.4", "12"]),
            ("What does the following Python code print?\n\ntotal = 0\nfor i in range(1, 5):\n    total += i\nprint(total)",
             "10", ["15", "6", "4"]),
            ("Which hexadecimal number is equal to the decimal number 255?",
             "FF", ["F0", "1FF", "EF"]),
            ("A linear search is run on an unsorted list of 200 distinct items for a value that is not in the list. How many comparisons with list items does it make?",
             "200", ["100", "8", "40000"]),
            ("In Python, what is the value of (True and False) or (not False)?",
             "True", ["False", "None", "Nothing; an error occurs"]),
            ("Which sorting algorithm works by repeatedly stepping through the list and swapping adjacent elements that are out of order?",
             "Bubble sort", ["Merge sort", "Heap sort", "Counting sort"]),
            ("In Python, after lst = [4, 9, 2, 7], what is the value of lst[-1] + lst[1]?",
             "16", ["13", "11", "6"]),
        ],
        "dev": [
            ("What is the binary representation of the decimal number 13?",
             "1101", ["1011", "1110", "1001"]),
            ("Which of the following is a good reason to put code into a function?",
             "To avoid repeating the same code in several places",
             ["To make the program use more memory",
              "To stop the program from accepting input",
              "To make every variable global"]),
            ("What does print(len(\"hello world\")) output in Python?",
             "11", ["10", "2", "12"]),
            ("Which data structure removes items in first-in, first-out (FIFO) order?",
             "Queue", ["Stack", "Binary tree", "Set"]),
            ("In Python, what does the expression 2 ** 5 evaluate to?",
             "32", ["10", "25", "7"]),
        ],
    },
    "astronomy": {
        "test": [
            ("Which planet in our solar system has the shortest orbital period around the Sun?",
             "Mercury", ["Venus", "Mars", "Earth"]),
            ("What process produces most of the energy released in the core of the Sun today?",
             "Nuclear fusion of hydrogen into helium",
             ["Nuclear fission of uranium", "Chemical burning of carbon", "Radioactive decay of iron"]),
            ("A light-year is a unit of",
             "distance", ["time", "speed", "brightness"]),
            ("What is the main reason Earth has seasons?",
             "The tilt of Earth's rotation axis relative to the plane of its orbit",
             ["Changes in Earth's distance from the Sun during the year",
              "Changes in the Sun's energy output during the year",
              "The gravitational pull of the Moon on Earth"]),
            ("What kind of object is left behind when a star of about one solar mass runs out of nuclear fuel and sheds its outer layers?",
             "A white dwarf", ["A black hole", "A neutron star", "A blue supergiant"]),
            ("Which is the largest planet in our solar system?",
             "Jupiter", ["Saturn", "Neptune", "Earth"]),
            ("About how long does sunlight take to travel from the Sun to Earth?",
             "About 8 minutes", ["About 8 seconds", "About 8 hours", "About 8 days"]),
            ("During a total solar eclipse, which body passes directly between the Sun and Earth?",
             "The Moon", ["Venus", "Mercury", "Mars"]),
            ("Stars with the hottest surfaces appear which color?",
             "Blue", ["Red", "Orange", "Yellow"]),
            ("Kepler's third law relates the orbital period of a planet to its",
             "average distance from the Sun (semi-major axis)",
             ["mass", "rotation speed", "number of moons"]),
            ("What is the boundary around a black hole, inside which nothing, not even light, can escape?",
             "The event horizon", ["The accretion disk", "The corona", "The heliopause"]),
            ("About how long does the Moon take to go through one full cycle of phases, from new moon to the next new moon?",
             "About 29.5 days", ["About 7 days", "About 365 days", "About 24 hours"]),
        ],
        "dev": [
            ("Which planet is best known for a bright ring system that can be seen through a small telescope?",
             "Saturn", ["Mars", "Mercury", "Venus"]),
            ("What is the name of the galaxy that contains our solar system?",
             "The Milky Way", ["The Andromeda Galaxy", "The Large Magellanic Cloud", "The Triangulum Galaxy"]),
            ("Which force keeps the planets in their orbits around the Sun?",
             "Gravity", ["Magnetism", "Friction", "The strong nuclear force"]),
            ("Which star is closest to Earth?",
             "The Sun", ["Proxima Centauri", "Sirius", "Polaris"]),
            ("The ion tail of a comet always points roughly in which direction?",
             "Away from the Sun",
             ["Toward the Sun", "Along the direction of the comet's motion", "Toward Earth"]),
        ],
    },
    "nutrition": {
        "test": [
            ("Which vitamin is made in human skin when it is exposed to ultraviolet B light from the sun?",
             "Vitamin D", ["Vitamin C", "Vitamin A", "Vitamin K"]),
            ("About how many kilocalories does one gram of dietary fat provide?",
             "9", ["4", "7", "2"]),
            ("Scurvy is caused by a deficiency of which vitamin?",
             "Vitamin C", ["Vitamin B12", "Vitamin D", "Vitamin E"]),
            ("Which mineral is a central part of hemoglobin, the oxygen-carrying protein in red blood cells?",
             "Iron", ["Calcium", "Zinc", "Sodium"]),
            ("Under normal conditions, what is the main fuel used by the human brain?",
             "Glucose", ["Protein", "Cholesterol", "Dietary fiber"]),
            ("Dietary fiber is found mainly in which kind of food?",
             "Plant foods such as whole grains, legumes, fruits and vegetables",
             ["Meat and poultry", "Eggs and dairy products", "Fish and shellfish"]),
            ("Which of the following is a fat-soluble vitamin?",
             "Vitamin E", ["Vitamin C", "Vitamin B6", "Folate"]),
            ("Amino acids that the human body cannot make and must get from food are called",
             "essential amino acids",
             ["nonessential amino acids", "complex carbohydrates", "trans fats"]),
            ("One serving of a food contains 10 g of protein, 20 g of carbohydrate and 5 g of fat. Using 4, 4 and 9 kilocalories per gram respectively, how many kilocalories does the serving provide?",
             "165", ["35", "120", "200"]),
            ("Getting enough of which nutrient before and during early pregnancy lowers the risk of neural tube defects in the baby?",
             "Folate (folic acid)", ["Vitamin K", "Sodium", "Vitamin C"]),
            ("Which mineral is most closely associated with building and keeping strong bones and teeth?",
             "Calcium", ["Iodine", "Potassium", "Copper"]),
            ("Iodine is added to table salt in many countries mainly to prevent disorders of which gland?",
             "Thyroid gland", ["Adrenal gland", "Pituitary gland", "Salivary gland"]),
        ],
        "dev": [
            ("Which nutrient is used mainly to build and repair body tissues?",
             "Protein", ["Carbohydrate", "Alcohol", "Fiber"]),
            ("Which of these foods is the richest source of vitamin C?",
             "Oranges", ["White rice", "Butter", "Chicken breast"]),
            ("About how many kilocalories does one gram of carbohydrate provide?",
             "4", ["9", "7", "1"]),
            ("Night blindness is an early sign of a deficiency of which vitamin?",
             "Vitamin A", ["Vitamin D", "Vitamin K", "Vitamin B1"]),
            ("Which type of fat raises LDL cholesterol and is found in partially hydrogenated oils, leading many countries to limit it in processed foods?",
             "Trans fat", ["Monounsaturated fat", "Omega-3 fat", "Polyunsaturated fat"]),
        ],
    },
}


def place(correct, wrong, index):
    """Return (choices, answer_index) with the correct choice at `index`."""
    choices = list(wrong)
    choices.insert(index, correct)
    return choices, index


def build_mmlu(split):
    rows = []
    for s_i, subject in enumerate(MMLU):
        for i, (question, correct, wrong) in enumerate(MMLU[subject][split]):
            assert len(wrong) == 3, (subject, question)
            choices, answer = place(correct, wrong, (i + s_i) % 4)
            rows.append({"question": question, "subject": subject,
                         "choices": choices, "answer": answer})
    return rows


# ---------------------------------------------------------------------------
# GSM8K-style items: (question, worked solution, gold integer, check)
# `check` is an independent Python expression of the problem's computation;
# it must evaluate to the gold answer.
# ---------------------------------------------------------------------------

GSM8K_TEST = [
    ("Lena buys 4 notebooks that cost $3 each and 2 pens that cost $1.50 each. She pays with a $20 bill. How much change, in dollars, does she get back?",
     "The notebooks cost 4 * 3 = <<4*3=12>>12 dollars.\nThe pens cost 2 * 1.50 = <<2*1.5=3>>3 dollars.\nAltogether she spends 12 + 3 = <<12+3=15>>15 dollars.\nHer change is 20 - 15 = <<20-15=5>>5 dollars.",
     5, "20 - (4*3 + 2*1.5)"),
    ("A baker makes 4 batches of bread, one after another. Each batch takes 45 minutes. How many hours does she spend making the bread?",
     "The batches take 4 * 45 = <<4*45=180>>180 minutes.\nThere are 60 minutes in an hour, so that is 180 / 60 = <<180/60=3>>3 hours.",
     3, "4*45/60"),
    ("A car travels at 60 miles per hour for 2 hours and then at 45 miles per hour for 3 hours. How many miles does it travel in total?",
     "In the first part it travels 60 * 2 = <<60*2=120>>120 miles.\nIn the second part it travels 45 * 3 = <<45*3=135>>135 miles.\nIn total it travels 120 + 135 = <<120+135=255>>255 miles.",
     255, "60*2 + 45*3"),
    ("Omar has 36 stickers. He gives 1/3 of them to his sister. Then he gives 1/4 of the stickers he has left to his friend. How many stickers does Omar have now?",
     "He gives his sister 36 / 3 = <<36/3=12>>12 stickers.\nHe then has 36 - 12 = <<36-12=24>>24 stickers.\nHe gives his friend 24 / 4 = <<24/4=6>>6 stickers.\nOmar has 24 - 6 = <<24-6=18>>18 stickers now.",
     18, "(36 - 36/3) * (1 - 1/4)"),
    ("A jacket normally costs $80. This week it is on sale for 25% off. What is the sale price of the jacket in dollars?",
     "The discount is 80 * 0.25 = <<80*0.25=20>>20 dollars.\nThe sale price is 80 - 20 = <<80-20=60>>60 dollars.",
     60, "80 * (1 - 0.25)"),
    ("Priya is 3 times as old as her son. In 12 years, Priya will be twice as old as her son. How old is Priya now?",
     "Let the son's age be s, so Priya is 3s.\nIn 12 years: 3s + 12 = 2(s + 12) = 2s + 24.\nSo s = 24 - 12 = <<24-12=12>>12.\nPriya is 3 * 12 = <<3*12=36>>36 years old.",
     36, "3 * next(s for s in range(1, 100) if 3*s + 12 == 2*(s + 12))"),
    ("Tom wants to cover a rectangular floor that is 12 feet long and 10 feet wide with square tiles that are 2 feet on each side. How many tiles does he need?",
     "The floor has an area of 12 * 10 = <<12*10=120>>120 square feet.\nEach tile covers 2 * 2 = <<2*2=4>>4 square feet.\nHe needs 120 / 4 = <<120/4=30>>30 tiles.",
     30, "(12//2) * (10//2)"),
    ("A school has 18 classes with 25 students in each class. 40% of the students ride the bus to school. How many students ride the bus?",
     "The school has 18 * 25 = <<18*25=450>>450 students.\nThe number who ride the bus is 450 * 0.40 = <<450*0.40=180>>180.",
     180, "18*25*40/100"),
    ("Jamal earns $15 per hour. He works 6 hours a day, 5 days a week. How many dollars does he earn in 4 weeks?",
     "Each day he earns 15 * 6 = <<15*6=90>>90 dollars.\nEach week he earns 90 * 5 = <<90*5=450>>450 dollars.\nIn 4 weeks he earns 450 * 4 = <<450*4=1800>>1800 dollars.",
     1800, "15*6*5*4"),
    ("A water tank holds 500 liters when full. Right now it is 30% full. How many more liters of water are needed to fill it?",
     "The tank now has 500 * 0.30 = <<500*0.30=150>>150 liters.\nIt needs 500 - 150 = <<500-150=350>>350 more liters.",
     350, "500 * 0.7"),
    ("Mia reads 24 pages of her book every day. The book has 312 pages, and she has already been reading it for 7 days. How many more days will it take her to finish the book?",
     "So far she has read 24 * 7 = <<24*7=168>>168 pages.\nShe has 312 - 168 = <<312-168=144>>144 pages left.\nThat will take 144 / 24 = <<144/24=6>>6 more days.",
     6, "312/24 - 7"),
    ("A farmer has 14 cows and 23 chickens. How many legs do all of these animals have in total?",
     "The cows have 14 * 4 = <<14*4=56>>56 legs.\nThe chickens have 23 * 2 = <<23*2=46>>46 legs.\nTogether they have 56 + 46 = <<56+46=102>>102 legs.",
     102, "14*4 + 23*2"),
    ("A pizza is cut into 12 equal slices. Ana eats 1/4 of the pizza and Ben eats 1/3 of the pizza. How many slices are left?",
     "Ana eats 12 / 4 = <<12/4=3>>3 slices.\nBen eats 12 / 3 = <<12/3=4>>4 slices.\nThey eat 3 + 4 = <<3+4=7>>7 slices, so 12 - 7 = <<12-7=5>>5 slices are left.",
     5, "12 * (1 - 1/4 - 1/3)"),
    ("A store sells apples for $0.40 each, or in bags of 10 apples for $3 a bag. Carlos needs 30 apples. How many dollars does he save by buying 3 bags instead of 30 single apples?",
     "30 single apples cost 30 * 0.40 = <<30*0.40=12>>12 dollars.\n3 bags cost 3 * 3 = <<3*3=9>>9 dollars.\nHe saves 12 - 9 = <<12-9=3>>3 dollars.",
     3, "30*0.4 - 3*3"),
    ("A cyclist rides 18 kilometers in 45 minutes. If she keeps the same speed, how many kilometers will she ride in 2 hours?",
     "Her speed is 18 / 45 = <<18/45=0.4>>0.4 kilometers per minute.\n2 hours is 2 * 60 = <<2*60=120>>120 minutes.\nShe rides 0.4 * 120 = <<0.4*120=48>>48 kilometers.",
     48, "18 * (120/45)"),
    ("The price of a bicycle went up from $240 to $300. By what percent did the price increase?",
     "The price went up by 300 - 240 = <<300-240=60>>60 dollars.\nAs a fraction of the old price that is 60 / 240 = <<60/240=0.25>>0.25.\nThat is 0.25 * 100 = <<0.25*100=25>>25 percent.",
     25, "(300-240)/240*100"),
    ("Grace is 8 years older than her brother. The sum of their ages is 30. How old is Grace?",
     "If the brother's age is b, then b + (b + 8) = 30, so 2b = 30 - 8 = <<30-8=22>>22.\nThe brother is 22 / 2 = <<22/2=11>>11 years old.\nGrace is 11 + 8 = <<11+8=19>>19 years old.",
     19, "next(b + 8 for b in range(100) if b + (b + 8) == 30)"),
    ("A triangle has a base of 14 centimeters and a height of 9 centimeters. What is its area in square centimeters?",
     "The area of a triangle is half of base times height.\n14 * 9 = <<14*9=126>>126, and half of that is 126 / 2 = <<126/2=63>>63 square centimeters.",
     63, "14*9/2"),
    ("A movie starts at 7:15 p.m. and lasts 2 hours and 50 minutes. How many minutes after 9:00 p.m. does the movie end?",
     "Two hours after 7:15 p.m. is 9:15 p.m.\nThe movie ends 50 minutes after 9:15 p.m., which is 15 + 50 = <<15+50=65>>65 minutes after 9:00 p.m.",
     65, "(19*60 + 15 + 2*60 + 50) - 21*60"),
    ("Ella wants to buy a tablet that costs $210. She already has $54 and saves $12 every week. How many weeks does she need to save to have exactly enough money?",
     "She still needs 210 - 54 = <<210-54=156>>156 dollars.\nAt 12 dollars a week that takes 156 / 12 = <<156/12=13>>13 weeks.",
     13, "(210-54)/12"),
    ("A recipe uses 3 cups of flour for every 2 cups of sugar. Dan uses 12 cups of flour. How many cups of sugar does he need?",
     "12 cups of flour is 12 / 3 = <<12/3=4>>4 times the recipe amount.\nHe needs 4 * 2 = <<4*2=8>>8 cups of sugar.",
     8, "12 * 2/3"),
    ("A jar holds 120 marbles. 35% of them are red, 25% are blue, and the rest are green. How many green marbles are in the jar?",
     "Red and blue together are 35 + 25 = <<35+25=60>>60 percent of the marbles.\nGreen marbles are 100 - 60 = <<100-60=40>>40 percent.\nThere are 120 * 0.40 = <<120*0.40=48>>48 green marbles.",
     48, "120 - 120*0.35 - 120*0.25"),
    ("Rosa's phone plan costs $25 per month plus $0.10 for each text message she sends. Last month she sent 340 text messages. How many dollars was her bill?",
     "The texts cost 340 * 0.10 = <<340*0.10=34>>34 dollars.\nHer bill was 25 + 34 = <<25+34=59>>59 dollars.",
     59, "25 + 340*0.1"),
    ("A rectangular swimming pool is 20 meters long, 10 meters wide and 2 meters deep. How many cubic meters of water does it hold when it is full?",
     "The floor of the pool has an area of 20 * 10 = <<20*10=200>>200 square meters.\nThe volume is 200 * 2 = <<200*2=400>>400 cubic meters.",
     400, "20*10*2"),
    ("Leo has twice as many books as Max. Max has 5 more books than Nia. Nia has 13 books. How many books do the three of them have altogether?",
     "Max has 13 + 5 = <<13+5=18>>18 books.\nLeo has 2 * 18 = <<2*18=36>>36 books.\nTogether they have 13 + 18 + 36 = <<13+18+36=67>>67 books.",
     67, "13 + (13+5) + 2*(13+5)"),
    ("A factory makes 240 toys per hour and runs for 8 hours each day. 5% of the toys it makes are defective. How many toys that are not defective does it make in one day?",
     "In a day it makes 240 * 8 = <<240*8=1920>>1920 toys.\nThe defective toys number 1920 * 0.05 = <<1920*0.05=96>>96.\nThe good toys number 1920 - 96 = <<1920-96=1824>>1824.",
     1824, "240*8*95/100"),
    ("Kai buys 3 shirts for $18 each and 2 pairs of pants for $35 each. He uses a coupon that takes $20 off his total. How many dollars does he pay?",
     "The shirts cost 3 * 18 = <<3*18=54>>54 dollars.\nThe pants cost 2 * 35 = <<2*35=70>>70 dollars.\nBefore the coupon the total is 54 + 70 = <<54+70=124>>124 dollars.\nHe pays 124 - 20 = <<124-20=104>>104 dollars.",
     104, "3*18 + 2*35 - 20"),
    ("A runner completes one lap of a track every 90 seconds. How many laps does she complete in 30 minutes?",
     "30 minutes is 30 * 60 = <<30*60=1800>>1800 seconds.\nShe completes 1800 / 90 = <<1800/90=20>>20 laps.",
     20, "30*60/90"),
    ("Hana scored 82, 90, 76 and 88 on her first four tests. What score does she need on the fifth test so that her average over all five tests is 85?",
     "For an average of 85 over 5 tests she needs 85 * 5 = <<85*5=425>>425 points in total.\nSo far she has 82 + 90 + 76 + 88 = <<82+90+76+88=336>>336 points.\nShe needs 425 - 336 = <<425-336=89>>89 on the fifth test.",
     89, "85*5 - (82+90+76+88)"),
    ("A painter uses 1 liter of paint for every 8 square meters of wall. He has to paint 2 walls that are each 6 meters long and 4 meters high. How many liters of paint does he need?",
     "Each wall has an area of 6 * 4 = <<6*4=24>>24 square meters.\nThe two walls have 24 * 2 = <<24*2=48>>48 square meters.\nHe needs 48 / 8 = <<48/8=6>>6 liters of paint.",
     6, "2*6*4/8"),
    ("An empty bus has 48 seats. At the first stop 19 people get on. At the second stop 7 people get off and 15 people get on. Everyone on the bus sits in a seat. How many seats are empty now?",
     "After the first stop there are 19 people on the bus.\nAfter the second stop there are 19 - 7 + 15 = <<19-7+15=27>>27 people.\nThere are 48 - 27 = <<48-27=21>>21 empty seats.",
     21, "48 - (19 - 7 + 15)"),
    ("Mr. Green's class has a goal of collecting 450 cans for a food drive. So far the class has collected 3/5 of its goal. How many more cans does the class need to collect?",
     "The class has collected 450 * 3 / 5 = <<450*3/5=270>>270 cans.\nIt still needs 450 - 270 = <<450-270=180>>180 cans.",
     180, "450 * 2/5"),
    ("A gardener plants 8 rows of tomato plants with 15 plants in each row. Each plant produces 6 tomatoes. She packs all the tomatoes into boxes that hold 20 tomatoes each. How many boxes does she fill?",
     "She has 8 * 15 = <<8*15=120>>120 plants.\nThey produce 120 * 6 = <<120*6=720>>720 tomatoes.\nShe fills 720 / 20 = <<720/20=36>>36 boxes.",
     36, "8*15*6/20"),
    ("Tim is 7 years old. Sara is 3 times as old as Tim, and Ivan is 4 years younger than Sara. How old will Ivan be in 5 years?",
     "Sara is 3 * 7 = <<3*7=21>>21 years old.\nIvan is 21 - 4 = <<21-4=17>>17 years old.\nIn 5 years Ivan will be 17 + 5 = <<17+5=22>>22 years old.",
     22, "3*7 - 4 + 5"),
    ("A laptop costs $900. The store takes 20% off the price, and then takes another 10% off the reduced price. What is the final price in dollars?",
     "After the first discount the price is 900 * 0.80 = <<900*0.80=720>>720 dollars.\nThe second discount takes off 720 * 0.10 = <<720*0.10=72>>72 dollars.\nThe final price is 720 - 72 = <<720-72=648>>648 dollars.",
     648, "900 * 0.8 * 0.9"),
    ("A tap pours 4 liters of water per minute into an empty 60-liter tub, but the drain is open and lets out 1 liter per minute. How many minutes does it take to fill the tub?",
     "The tub gains 4 - 1 = <<4-1=3>>3 liters each minute.\nIt takes 60 / 3 = <<60/3=20>>20 minutes to fill.",
     20, "60/(4-1)"),
    ("The perimeter of a square is 36 inches. What is the area of the square in square inches?",
     "Each side is 36 / 4 = <<36/4=9>>9 inches long.\nThe area is 9 * 9 = <<9*9=81>>81 square inches.",
     81, "(36/4)**2"),
    ("Nora buys 2.5 kilograms of cheese at $8 per kilogram and 3 loaves of bread at $3 per loaf. How many dollars does she spend?",
     "The cheese costs 2.5 * 8 = <<2.5*8=20>>20 dollars.\nThe bread costs 3 * 3 = <<3*3=9>>9 dollars.\nShe spends 20 + 9 = <<20+9=29>>29 dollars.",
     29, "2.5*8 + 3*3"),
    ("A library had 1250 books. It bought 175 new books and gave away 90 old books. Then 1/5 of all its books were checked out. How many books are still on the shelves?",
     "After buying and giving away books the library has 1250 + 175 - 90 = <<1250+175-90=1335>>1335 books.\nThe number checked out is 1335 / 5 = <<1335/5=267>>267.\nThe number still on the shelves is 1335 - 267 = <<1335-267=1068>>1068.",
     1068, "(1250 + 175 - 90) * 4/5"),
    ("A car can go 28 miles on 1 gallon of gas, and gas costs $4 per gallon. How many dollars does the gas cost for a 420-mile trip?",
     "The trip uses 420 / 28 = <<420/28=15>>15 gallons.\nThe gas costs 15 * 4 = <<15*4=60>>60 dollars.",
     60, "420/28*4"),
    ("Zoe has $45. She spends 1/3 of her money on a book and then spends $8 on lunch. How many dollars does she have left?",
     "The book costs 45 / 3 = <<45/3=15>>15 dollars.\nShe has 45 - 15 - 8 = <<45-15-8=22>>22 dollars left.",
     22, "45*2/3 - 8"),
    ("In a class of 32 students, the ratio of boys to girls is 3 to 5. How many girls are in the class?",
     "The ratio has 3 + 5 = <<3+5=8>>8 parts.\nEach part is 32 / 8 = <<32/8=4>>4 students.\nThere are 5 * 4 = <<5*4=20>>20 girls.",
     20, "32 * 5/8"),
    ("A small shop earned $5000 in January. Its earnings grew by 10% in February, and then grew by another 10% in March compared to February. How many dollars did it earn in March?",
     "February's earnings were 5000 * 1.10 = <<5000*1.10=5500>>5500 dollars.\nMarch's earnings were 5500 * 1.10 = <<5500*1.10=6050>>6050 dollars.",
     6050, "5000 * 11/10 * 11/10"),
    ("A hiker walks uphill at 3 miles per hour and downhill at 5 miles per hour. The trail goes 15 miles uphill to the summit, and she comes back down the same trail. How many hours does the whole hike take?",
     "Going up takes 15 / 3 = <<15/3=5>>5 hours.\nComing down takes 15 / 5 = <<15/5=3>>3 hours.\nThe whole hike takes 5 + 3 = <<5+3=8>>8 hours.",
     8, "15/3 + 15/5"),
    ("Paul and Quinn split the cost of an $84 dinner. Paul pays $12 more than Quinn. How many dollars does Paul pay?",
     "If they paid equally after removing Paul's extra 12 dollars, each would pay (84 - 12) / 2 = <<(84-12)/2=36>>36 dollars.\nPaul pays 36 + 12 = <<36+12=48>>48 dollars.",
     48, "next(q + 12 for q in range(100) if q + (q + 12) == 84)"),
    ("The length of a rectangle is 3 times its width, and its perimeter is 64 centimeters. What is the area of the rectangle in square centimeters?",
     "The perimeter is 2 * (3w + w) = 8w, so the width is 64 / 8 = <<64/8=8>>8 centimeters.\nThe length is 3 * 8 = <<3*8=24>>24 centimeters.\nThe area is 24 * 8 = <<24*8=192>>192 square centimeters.",
     192, "next(3*w*w for w in range(1, 100) if 2*(3*w + w) == 64)"),
    ("A coffee shop sold 135 cups of coffee on Monday. On Tuesday it sold 20% more cups than on Monday. On Wednesday it sold 30 fewer cups than on Tuesday. How many cups did it sell over the three days?",
     "On Tuesday it sold 135 * 1.20 = <<135*1.20=162>>162 cups.\nOn Wednesday it sold 162 - 30 = <<162-30=132>>132 cups.\nOver the three days it sold 135 + 162 + 132 = <<135+162+132=429>>429 cups.",
     429, "135 + 135*6/5 + (135*6/5 - 30)"),
    ("Ruth is knitting a scarf that will be 150 centimeters long. She knits 12 centimeters each evening. After 9 evenings, what percent of the scarf has she finished?",
     "After 9 evenings she has knitted 12 * 9 = <<12*9=108>>108 centimeters.\nThat is 108 / 150 = <<108/150=0.72>>0.72 of the scarf.\nAs a percent that is 0.72 * 100 = <<0.72*100=72>>72 percent.",
     72, "12*9*100/150"),
    ("A class trip costs $15 per student for the bus and $9 per student for museum tickets. There are 28 students, and the school pays $200 of the total cost. How many dollars do the students pay in total?",
     "Each student's trip costs 15 + 9 = <<15+9=24>>24 dollars.\nFor 28 students the trip costs 24 * 28 = <<24*28=672>>672 dollars.\nThe students pay 672 - 200 = <<672-200=472>>472 dollars.",
     472, "28*15 + 28*9 - 200"),
    ("A bakery bakes 7 dozen cookies and sells 5/6 of them. How many cookies are left?",
     "7 dozen cookies is 7 * 12 = <<7*12=84>>84 cookies.\nThe bakery sells 84 * 5 / 6 = <<84*5/6=70>>70 cookies.\nThere are 84 - 70 = <<84-70=14>>14 cookies left.",
     14, "7*12/6"),
    ("A clock gains 3 minutes every hour. It is set to the correct time at 8:00 a.m. How many minutes fast is the clock at 8:00 p.m. on the same day?",
     "From 8:00 a.m. to 8:00 p.m. is 12 hours.\nThe clock gains 12 * 3 = <<12*3=36>>36 minutes.",
     36, "(20 - 8) * 3"),
    ("Liam earns $3200 a month. He spends 35% of it on rent, 15% on food and $400 on transport, and he saves the rest. How many dollars does he save each month?",
     "Rent costs 3200 * 0.35 = <<3200*0.35=1120>>1120 dollars.\nFood costs 3200 * 0.15 = <<3200*0.15=480>>480 dollars.\nHe saves 3200 - 1120 - 480 - 400 = <<3200-1120-480-400=1200>>1200 dollars.",
     1200, "3200 * 50/100 - 400"),
    ("A box of chocolates has 6 rows with 8 chocolates in each row. Jenna eats 4 of the chocolates and then gives 1/4 of the remaining chocolates to her friend. How many chocolates are left in the box?",
     "The box starts with 6 * 8 = <<6*8=48>>48 chocolates.\nAfter Jenna eats 4, there are 48 - 4 = <<48-4=44>>44 left.\nShe gives away 44 / 4 = <<44/4=11>>11 chocolates.\nThere are 44 - 11 = <<44-11=33>>33 chocolates left.",
     33, "(6*8 - 4) * 3/4"),
    ("A square garden has sides that are 15 meters long. Fencing costs $12 per meter. How many dollars will it cost to put a fence around the whole garden?",
     "The perimeter of the garden is 4 * 15 = <<4*15=60>>60 meters.\nThe fence costs 60 * 12 = <<60*12=720>>720 dollars.",
     720, "4*15*12"),
    ("Aiden is twice as old as Bella. Six years ago, Aiden was 3 times as old as Bella was then. How old is Aiden now?",
     "Let Bella's age be b, so Aiden is 2b.\nSix years ago: 2b - 6 = 3(b - 6) = 3b - 18, so b = 18 - 6 = <<18-6=12>>12.\nAiden is 2 * 12 = <<2*12=24>>24 years old.",
     24, "next(2*b for b in range(7, 100) if 2*b - 6 == 3*(b - 6))"),
    ("One train travels 360 kilometers in 4 hours. A second train is 15 kilometers per hour faster. How many hours does the second train take to travel 420 kilometers?",
     "The first train's speed is 360 / 4 = <<360/4=90>>90 kilometers per hour.\nThe second train's speed is 90 + 15 = <<90+15=105>>105 kilometers per hour.\nIt takes 420 / 105 = <<420/105=4>>4 hours.",
     4, "420 / (360/4 + 15)"),
    ("An electrician charges a $50 call-out fee plus $35 for each hour of work. A job cost $225 in total. How many hours did the job take?",
     "The hourly part of the bill is 225 - 50 = <<225-50=175>>175 dollars.\nThe job took 175 / 35 = <<175/35=5>>5 hours.",
     5, "(225-50)/35"),
    ("A printer prints 18 pages per minute. How many minutes does it take to print 15 copies of a 24-page report?",
     "15 copies of 24 pages is 15 * 24 = <<15*24=360>>360 pages.\nPrinting them takes 360 / 18 = <<360/18=20>>20 minutes.",
     20, "15*24/18"),
    ("A jar contains 5 red candies, 7 blue candies and 8 yellow candies. What percent of the candies are blue?",
     "There are 5 + 7 + 8 = <<5+7+8=20>>20 candies.\nThe blue fraction is 7 / 20 = <<7/20=0.35>>0.35, which is 0.35 * 100 = <<0.35*100=35>>35 percent.",
     35, "7*100/(5+7+8)"),
    ("Sofia wants to carpet a room that is 5 meters by 4 meters. Carpet costs $22 per square meter, and installation costs a flat $60. How many dollars will she pay in total?",
     "The room has an area of 5 * 4 = <<5*4=20>>20 square meters.\nThe carpet costs 20 * 22 = <<20*22=440>>440 dollars.\nWith installation she pays 440 + 60 = <<440+60=500>>500 dollars.",
     500, "5*4*22 + 60"),
    ("Three brothers share $540 in the ratio 2 : 3 : 4. How many dollars does the brother with the largest share get?",
     "The ratio has 2 + 3 + 4 = <<2+3+4=9>>9 parts.\nEach part is 540 / 9 = <<540/9=60>>60 dollars.\nThe largest share is 4 * 60 = <<4*60=240>>240 dollars.",
     240, "540 * 4/9"),
    ("A parking garage charges $3 for the first hour and $2 for each additional hour. Maya parked from 9:00 a.m. to 3:00 p.m. How many dollars did she pay?",
     "From 9:00 a.m. to 3:00 p.m. is 6 hours.\nAfter the first hour there are 6 - 1 = <<6-1=5>>5 additional hours, costing 5 * 2 = <<5*2=10>>10 dollars.\nShe paid 3 + 10 = <<3+10=13>>13 dollars.",
     13, "3 + 2*((15 - 9) - 1)"),
    ("A swimmer swims laps in a 25-meter pool. She swims 80 laps on Monday and half as many laps on Tuesday. How many kilometers does she swim over the two days?",
     "On Tuesday she swims 80 / 2 = <<80/2=40>>40 laps.\nOver the two days she swims 80 + 40 = <<80+40=120>>120 laps.\nThat is 120 * 25 = <<120*25=3000>>3000 meters, which is 3000 / 1000 = <<3000/1000=3>>3 kilometers.",
     3, "(80 + 80/2) * 25 / 1000"),
    ("Ben has 3 quarters, 7 dimes and 12 nickels. A quarter is worth 25 cents, a dime 10 cents and a nickel 5 cents. How many cents does Ben have?",
     "The quarters are worth 3 * 25 = <<3*25=75>>75 cents.\nThe dimes are worth 7 * 10 = <<7*10=70>>70 cents.\nThe nickels are worth 12 * 5 = <<12*5=60>>60 cents.\nBen has 75 + 70 + 60 = <<75+70+60=205>>205 cents.",
     205, "3*25 + 7*10 + 12*5"),
    ("A fruit seller buys 60 mangoes for $45 in total and sells all of them for $1.20 each. How many dollars of profit does he make?",
     "He sells the mangoes for 60 * 1.20 = <<60*1.20=72>>72 dollars.\nHis profit is 72 - 45 = <<72-45=27>>27 dollars.",
     27, "60*1.2 - 45"),
    ("An adult drinks 8 glasses of water a day, and each glass holds 250 milliliters. How many liters of water does the adult drink in one week?",
     "Each day the adult drinks 8 * 250 = <<8*250=2000>>2000 milliliters, which is 2000 / 1000 = <<2000/1000=2>>2 liters.\nIn a week that is 2 * 7 = <<2*7=14>>14 liters.",
     14, "8*250*7/1000"),
]

GSM8K_TRAIN = [
    ("Kelly picks 42 strawberries and shares them equally among 6 baskets. Then she eats 2 strawberries from one of the baskets. How many strawberries are in that basket now?",
     "Each basket gets 42 / 6 = <<42/6=7>>7 strawberries.\nAfter she eats 2, that basket has 7 - 2 = <<7-2=5>>5 strawberries.",
     5, "42/6 - 2"),
    ("A shirt costs $24 and a hat costs half as much as the shirt. How many dollars do 2 shirts and 3 hats cost?",
     "A hat costs 24 / 2 = <<24/2=12>>12 dollars.\n2 shirts cost 2 * 24 = <<2*24=48>>48 dollars.\n3 hats cost 3 * 12 = <<3*12=36>>36 dollars.\nTogether they cost 48 + 36 = <<48+36=84>>84 dollars.",
     84, "2*24 + 3*24/2"),
    ("A snail crawls 15 centimeters every minute. How many meters does it crawl in one hour?",
     "In one hour it crawls 15 * 60 = <<15*60=900>>900 centimeters.\nThat is 900 / 100 = <<900/100=9>>9 meters.",
     9, "15*60/100"),
    ("Paula is 5 years older than Rick. In 3 years, Rick will be 20 years old. How old is Paula now?",
     "Rick is 20 - 3 = <<20-3=17>>17 years old now.\nPaula is 17 + 5 = <<17+5=22>>22 years old.",
     22, "20 - 3 + 5"),
    ("A field is 40 meters long and 25 meters wide. Half of the field is planted with corn. How many square meters are planted with corn?",
     "The field has an area of 40 * 25 = <<40*25=1000>>1000 square meters.\nHalf of it is 1000 / 2 = <<1000/2=500>>500 square meters.",
     500, "40*25/2"),
    ("A store had 80 umbrellas. It sold 15% of them on Monday and 20 more on Tuesday. How many umbrellas does the store have left?",
     "On Monday it sold 80 * 0.15 = <<80*0.15=12>>12 umbrellas.\nIt has 80 - 12 - 20 = <<80-12-20=48>>48 umbrellas left.",
     48, "80*85/100 - 20"),
    ("Joe runs 4 kilometers on each weekday and 7 kilometers on each day of the weekend. How many kilometers does he run in 2 weeks?",
     "On the 5 weekdays he runs 5 * 4 = <<5*4=20>>20 kilometers.\nOn the 2 weekend days he runs 2 * 7 = <<2*7=14>>14 kilometers.\nEach week he runs 20 + 14 = <<20+14=34>>34 kilometers, so in 2 weeks he runs 34 * 2 = <<34*2=68>>68 kilometers.",
     68, "2*(5*4 + 2*7)"),
    ("A bag of rice weighs 25 kilograms. A family uses 500 grams of rice every day. How many days will the bag last?",
     "The bag holds 25 * 1000 = <<25*1000=25000>>25000 grams.\nIt lasts 25000 / 500 = <<25000/500=50>>50 days.",
     50, "25*1000/500"),
    ("Show tickets cost $12 for each adult and $7 for each child. A family of 2 adults and 3 children pays with a $50 bill. How many dollars of change do they get?",
     "The adult tickets cost 2 * 12 = <<2*12=24>>24 dollars.\nThe child tickets cost 3 * 7 = <<3*7=21>>21 dollars.\nThe tickets cost 24 + 21 = <<24+21=45>>45 dollars, so the change is 50 - 45 = <<50-45=5>>5 dollars.",
     5, "50 - (2*12 + 3*7)"),
    ("A printer is loaded with 500 sheets of paper. Each report uses 12 sheets. After 35 reports are printed, how many sheets are left?",
     "The reports use 35 * 12 = <<35*12=420>>420 sheets.\nThere are 500 - 420 = <<500-420=80>>80 sheets left.",
     80, "500 - 35*12"),
]

ANNOT = re.compile(r"<<([^=<>]+)=([^<>]+)>>([^\s]*)")


def _num_eq(a, b):
    return abs(float(a) - float(b)) < 1e-9


def check_gsm8k(items, name):
    """Verify annotations, independent checks and the final answer."""
    problems = []
    for n, (question, solution, gold, check) in enumerate(items):
        where = "%s[%d]" % (name, n)
        if not isinstance(gold, int):
            problems.append("%s: gold is not an int" % where)
        found = ANNOT.findall(solution)
        if not found:
            problems.append("%s: no calculator annotations" % where)
        for expr, value, shown in found:
            got = eval(expr, {"__builtins__": {}})
            if not _num_eq(got, value):
                problems.append("%s: <<%s=%s>> evaluates to %r" % (where, expr, value, got))
            if shown.rstrip(".,") != value:
                problems.append("%s: annotation %s shows %r" % (where, value, shown))
        last_value = found[-1][1] if found else None
        if last_value is None or not _num_eq(last_value, gold):
            problems.append("%s: last computed value %s != gold %s" % (where, last_value, gold))
        independent = eval(check, {"__builtins__": {}, "next": next, "range": range})
        if not _num_eq(independent, gold):
            problems.append("%s: independent check %r gives %r, gold %s" % (where, check, independent, gold))
        steps = solution.count("\n") + 1
        if not 2 <= steps <= 6:
            problems.append("%s: %d reasoning lines" % (where, steps))
    return problems


def build_gsm8k(items):
    return [{"question": q, "answer": "%s\n#### %d" % (sol, gold)} for q, sol, gold, _ in items]


def write_jsonl(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="ascii", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=True) + "\n")


def main(argv):
    problems = check_gsm8k(GSM8K_TEST, "gsm8k_test") + check_gsm8k(GSM8K_TRAIN, "gsm8k_train")
    if problems:
        for p in problems:
            print("ERROR", p)
        return 1
    outputs = {
        "mmlu_local/test.jsonl": build_mmlu("test"),
        "mmlu_local/dev.jsonl": build_mmlu("dev"),
        "gsm8k_local/test.jsonl": build_gsm8k(GSM8K_TEST),
        "gsm8k_local/train.jsonl": build_gsm8k(GSM8K_TRAIN),
    }
    for rel, rows in outputs.items():
        if "--check" not in argv:
            write_jsonl(os.path.join(HERE, rel), rows)
        print("%-24s %d rows" % (rel, len(rows)))
    print("all GSM8K solutions verified")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
